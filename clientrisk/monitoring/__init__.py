"""Watching the live model: drift statistics, judging new batches, retraining a challenger."""
