"""Classifier training and backbone pretraining, and their configuration (checkpoint files:
``rpc.models.checkpoint``; work folders: ``rpc.utils.workdir``; devices: ``rpc.utils.device``)."""
