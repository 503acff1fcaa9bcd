"""Models: the RPC stage network, the SFA module, region-specific prototypes (``rpc.models.rpc``)."""
