"""Training loop, checkpoints and devices (everything outside the models)."""
