"""Real models: checkpoints in, logits and answers out (placeholder, filled below)."""
