"""RS-CAM generation (multi-scale + flip inference) into map files (their format: ``rpc.data.maps``; their score:
``rpc.evaluation.local_maps``)."""
