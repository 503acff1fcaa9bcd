"""Palette PNG masks with the PASCAL VOC colormap (so masks are viewable, not black)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from rpc.utils.io import DataError, atomic_path

IGNORE_INDEX = 255


def voc_colormap(n: int = 256) -> np.ndarray:
    """The standard VOC colormap, ``(n, 3)`` uint8: bit-interleaved RGB of the label index."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


_PALETTE = voc_colormap().flatten().tolist()


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write an ``(H, W)`` uint8 label mask as a palette PNG, atomically."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{path}: mask must be 2-D, got shape {mask.shape}")
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    img.putpalette(_PALETTE)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def read_mask(path: str | os.PathLike, num_classes: int | None = None) -> np.ndarray:
    """Read a label mask as ``(H, W)`` uint8 indices.

    ``num_classes`` counts background: valid values are ``0..num_classes-1`` and 255. A palette PNG gives its
    indices directly; a grayscale PNG its values. RGB masks are refused (they need a colour lookup).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: mask not found")
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise DataError(f"{path}: mask must be a palette or grayscale PNG, found mode {img.mode}")
            mask = np.asarray(img, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"{path}: unreadable mask ({exc})") from exc
    if num_classes is not None:
        bad = (mask >= num_classes) & (mask != IGNORE_INDEX)
        if bad.any():
            values = sorted(set(np.unique(mask[bad]).tolist()))
            raise DataError(f"{path}: mask values {values} outside {{0..{num_classes - 1}, 255}}")
    return mask


def is_valid_mask(path: str | os.PathLike, num_classes: int) -> bool:
    """Whether ``path`` is a readable mask with valid values (a finished output, for resuming)."""
    try:
        read_mask(path, num_classes)
        return True
    except DataError:
        return False
