"""What is live: versioned deployments, the live pointer, rollback and safe loading."""
