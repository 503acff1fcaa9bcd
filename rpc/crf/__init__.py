"""Pseudo masks: dense-CRF refinement of localisation maps (the CRF itself, also used to post-process segmentation
scores: ``rpc.models.dense_crf``)."""
