"""Map files on disk: one ``<name>.npz`` per image (no pickle), read by every stage after inference.

Arrays (docs/method.md section 10): ``keys`` (int16: 0 and the present classes); ``cams`` (uint16 ``(len(keys),
H, W)``) with ``cams_scale`` (float32 ``(len(keys),)``): the channel's values in 65535 levels from 0 to its
maximum, ``value = level * scale``, stored as differences along each row (modulo 2**16: smooth maps then deflate
well); optionally ``stage_cams`` (uint16 ``(K_stages, len(keys), H, W)``) with ``stage_cams_scale``, the same
way. Deflated. Files of the earlier format (float16 ``cams``, no scale) are read as they are. This module imports
no torch, so CRF worker processes stay light.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from rpc.utils.io import DataError, is_temporary, save_npz_atomic

_BAD_FILE = (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError)


FLOAT16_MAX = float(np.finfo(np.float16).max)  # the earlier format's float16 range, kept as the storable bound
LEVELS = 65535  # uint16 levels from 0 to each channel's maximum


def check_storable(path: str | os.PathLike, values: np.ndarray, name: str = "cams") -> None:
    """Refuse maps that are not finite, negative or beyond float16's range (maps are scores in [0, 1]), naming
    ``path``: the file being written, or the source file a map is imported from."""
    if not np.isfinite(values).all():  # a diverged model: say so, write nothing
        raise DataError(f"{path}: non-finite values in the {name} (did the classifier diverge?)")
    if values.size and float(values.min()) < 0:
        raise DataError(f"{path}: negative values in the {name} (down to {float(values.min()):.6g}); maps are "
                        "scores >= 0")
    peak = float(np.abs(values).max(initial=0.0))
    if peak > FLOAT16_MAX:
        raise DataError(f"{path}: the {name} hold values up to {peak:.6g}, beyond float16's range (+-{FLOAT16_MAX:g}); "
                        "normalise them (maps are scores in [0, 1])")  # fmt: skip


def quantize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(..., H, W)`` scores >= 0 -> ``(uint16 levels, float32 scale (...,))``: each map's 0..max in 65535 steps."""
    values = np.asarray(values, np.float32)
    peak = values.max(axis=(-2, -1)) if values.size else np.zeros(values.shape[:-2], np.float32)
    scale = (peak / LEVELS).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0)[..., None, None]
    return np.rint(values / safe).clip(0, LEVELS).astype(np.uint16), scale


def dequantize(levels: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return levels.astype(np.float32) * np.asarray(scale, np.float32)[..., None, None]


def row_deltas(levels: np.ndarray) -> np.ndarray:
    """uint16 levels -> their differences along the last axis, modulo 2**16 (the first column kept)."""
    return np.diff(levels, axis=-1, prepend=np.zeros_like(levels[..., :1]))  # uint16 arithmetic wraps


def from_row_deltas(deltas: np.ndarray) -> np.ndarray:
    return np.cumsum(deltas, axis=-1, dtype=np.uint16)  # wraps back


def save_cams(path: str | os.PathLike, keys: np.ndarray, cams: np.ndarray, stage_cams: np.ndarray | None = None):
    """Write one image's maps (``cams`` ``(K, H, W)``, optional ``stage_cams`` ``(S, K, H, W)``) atomically."""
    arrays = {"keys": np.asarray(keys, np.int16)}
    for name, values in (("cams", cams), ("stage_cams", stage_cams)):
        if values is not None:
            check_storable(path, np.asarray(values), name)
            levels, arrays[f"{name}_scale"] = quantize(values)
            arrays[name] = row_deltas(levels)
    save_npz_atomic(path, compress=True, **arrays)


def _read(z, name: str) -> np.ndarray:
    if f"{name}_scale" in z.files:
        return dequantize(from_row_deltas(z[name]), z[f"{name}_scale"])
    return z[name].astype(np.float32)  # the earlier float16 format


def is_complete(path: Path) -> bool:
    """A map file is complete if it opens and holds ``keys`` and ``cams`` of matching length."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["cams"].shape[0] == z["keys"].shape[0]
    except _BAD_FILE:
        return False


def load_cams(path: str | os.PathLike, stages: bool = False):
    """``(keys (K,) int64, cams (K, H, W) float32)`` (plus ``stage_cams`` or None with ``stages=True``),
    with a clear error for a missing or broken file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: map file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys, cams = z["keys"].astype(np.int64), _read(z, "cams")
            if cams.ndim != 3 or cams.shape[0] != keys.shape[0]:
                raise ValueError(f"cams {cams.shape} do not match keys {keys.shape}")
            if not stages:
                return keys, cams
            return keys, cams, (_read(z, "stage_cams") if "stage_cams" in z.files else None)
    except _BAD_FILE as exc:
        raise DataError(f"{path}: unreadable map file ({exc})") from exc


def find_map(cam_dirs: list[Path], name: str) -> Path:
    """The map of ``name`` in the first of ``cam_dirs`` that holds it (the shard folders of one run)."""
    for d in cam_dirs:
        if (d / f"{name}.npz").is_file():
            return d / f"{name}.npz"
    raise DataError(f"no map {name}.npz for a listed image in {', '.join(str(d) for d in cam_dirs)}")


def as_dirs(cam_dirs) -> list[Path]:
    return [Path(cam_dirs)] if isinstance(cam_dirs, str | os.PathLike) else [Path(d) for d in cam_dirs]


def label_keys(label: np.ndarray) -> np.ndarray:
    """The keys a map file holds for an image: 0 (background) and its present classes, from ``(C,)`` multi-hot."""
    return np.concatenate([[0], np.flatnonzero(label) + 1]).astype(np.int64)


def check_maps(path: Path, keys: np.ndarray, cams: np.ndarray, label: np.ndarray, size: tuple[int, int]) -> None:
    """Clear errors for maps that do not belong to the image: keys vs its labels ``(C,)``, size vs ``(H, W)``."""
    expected = label_keys(label).tolist()
    if keys.tolist() != expected:
        raise DataError(f"{path}: keys {keys.tolist()} disagree with the image labels {expected}")
    if cams.shape[1:] != tuple(size):
        raise DataError(f"{path}: map size {cams.shape[1:]} differs from the image size {tuple(size)}")
    if not np.isfinite(cams).all():
        raise DataError(f"{path}: the map holds non-finite values")


def check_no_strays(cam_dirs: list[Path], listed: set[str], split: str) -> None:
    """A map for an image that is not in the list means maps and list disagree: say which file."""
    for d in cam_dirs:
        if not d.is_dir():
            raise DataError(f"{d}: map folder not found")
        for f in sorted(d.glob("*.npz")):
            if f.stem not in listed and not is_temporary(f):
                raise DataError(
                    f"{f}: map for an image that is not in split {split!r} (pass --allow-extra-maps if the maps "
                    f"cover a larger split on purpose)"
                )
