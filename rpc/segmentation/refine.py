"""The predictions' CRF post-processing as one task per image, for worker processes (``rpc.utils.pool``): this
module imports neither torch nor mmseg, so a spawned worker starts in a fraction of a second."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rpc.data.palette import write_mask
from rpc.models.dense_crf import CRFParams, crf_from_probs


def refine_and_write(image: np.ndarray, probs: np.ndarray, params: CRFParams, path: Path) -> float:
    """``image (H, W, 3)`` uint8, ``probs (K, H, W)`` float32 softmax scores -> the CRF's ``argmax`` written to
    ``path`` as a label PNG; returns the seconds spent in the CRF."""
    t0 = time.perf_counter()
    refined = crf_from_probs(image, probs, params)
    seconds = time.perf_counter() - t0
    write_mask(path, refined.argmax(0).astype(np.uint8))
    return seconds
