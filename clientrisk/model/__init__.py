"""The model: its own transformers, training, scoring and the block-wise fit."""
