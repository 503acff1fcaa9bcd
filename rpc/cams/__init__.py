"""RS-CAM generation (multi-scale + flip inference) and evaluation of localisation maps."""
