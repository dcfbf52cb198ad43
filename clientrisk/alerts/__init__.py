"""Alerts: what in the history is worth telling someone, and telling them (webhook, e-mail)."""
