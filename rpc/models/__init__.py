"""Models: the RPC stage network, the SFA module, region-specific prototypes (``rpc.models.rpc``); the model and
checkpoint files (``rpc.models.checkpoint``); the dense CRF (``rpc.models.dense_crf``)."""
