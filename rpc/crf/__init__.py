"""Dense-CRF refinement: pseudo masks from localisation maps, and post-processing of segmentation scores."""
