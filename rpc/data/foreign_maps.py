"""Maps in the formats of SIPE's and IRN's tools, to and from this project's ``.npz`` maps (``rpc.data.maps``).

Both tools save one ``<name>.npy`` per image holding a pickled dict (``np.save(path, dict)``):

- ``sipe``: ``keys`` (int, ``(K+1,)``: 0 for the background, then class index + 1, as ours) and ``IS_CAM``
  (float ``(K+1, H, W)``, background first): the same content as our ``keys``/``cams``.
- ``irn``: ``keys`` (int, ``(K,)``: class indices 0..C-1, no background), ``high_res`` (float ``(K, H, W)``,
  foreground maps in [0, 1]) and ``cam`` (the same at stride 4). IRN adds the background at evaluation time as a
  constant plane (its ``cam_eval_thres``): :func:`read_foreign` does the same with ``bg_threshold``.

Reading never runs code from the file: the pickle is read by an unpickler that builds only numpy arrays, dicts,
and (IRN stores ``cam`` as a torch tensor) tensors through torch's weights-only loader.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from pathlib import Path

import numpy as np

from rpc.data.maps import check_storable
from rpc.utils.io import DataError, atomic_dir, atomic_path, is_temporary
from rpc.utils.provenance import write_record
from rpc.utils.shard import shard

FORMATS = ("sipe", "irn")
IRN_STRIDE = 4

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
}


def _storage_from_bytes(data: bytes):
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays, dicts and tensors; any other global is refused (no code from the file runs)."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _storage_from_bytes
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def _load_npy_dict(path: Path) -> dict:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        if dtype != np.dtype(object) or shape != ():
            raise ValueError(f"expected a pickled dict (np.save(path, dict)), found an array {dtype} {shape}")
        value = _ArraysOnly(f).load()
    value = value.item() if isinstance(value, np.ndarray) else value
    if not isinstance(value, dict):
        raise ValueError(f"expected a dict, found {type(value).__name__}")
    return value


def _array(value) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def _class_keys(value) -> np.ndarray:
    """Class keys as int64: integers (or integral floats), >= 0, each once; anything else is a ValueError."""
    keys = _array(value)
    if keys.ndim != 1:
        raise ValueError(f"keys must be a list of class ids, found shape {keys.shape}")
    if not (np.issubdtype(keys.dtype, np.integer) or (np.issubdtype(keys.dtype, np.floating)
                                                      and np.isfinite(keys).all() and (keys == np.round(keys)).all())):
        raise ValueError(f"keys {keys.tolist()} are not integer class ids")  # fmt: skip
    keys = keys.astype(np.int64)
    if (keys < 0).any() or len(set(keys.tolist())) != keys.size:
        raise ValueError(f"keys {keys.tolist()} must be distinct class ids >= 0")
    return keys


def read_foreign(path: str | os.PathLike, fmt: str, bg_threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(keys (K+1,) int64 with 0 first, cams (K+1, H, W) float32)`` from a SIPE or IRN ``.npy`` map file.
    IRN maps need ``bg_threshold`` (the background plane's constant value)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise DataError(f"unknown map format {fmt!r}; known: {', '.join(FORMATS)}")
    try:
        d = _load_npy_dict(path)
        if fmt == "sipe":
            keys, cams = _class_keys(d["keys"]), _array(d["IS_CAM"]).astype(np.float32)
            if keys.size == 0 or keys[0] != 0:
                raise ValueError(f"SIPE keys start with the background (0), found {keys.tolist()}")
        else:
            if bg_threshold is None:
                raise DataError(f"{path}: IRN maps have no background channel: give a background threshold")
            fg_keys, fg = _class_keys(d["keys"]), _array(d["high_res"]).astype(np.float32)
            if fg.ndim != 3:
                raise ValueError(f"high_res has shape {fg.shape}, expected (K, H, W)")
            keys = np.concatenate([[0], fg_keys + 1])
            cams = np.concatenate([np.full((1, *fg.shape[1:]), bg_threshold, np.float32), fg])
    except (OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as exc:
        why = str(exc) if type(exc) is ValueError else f"{type(exc).__name__}: {exc}"
        raise DataError(f"{path}: not a {fmt.upper()} map file ({why})") from exc
    if cams.ndim != 3 or cams.shape[0] != keys.shape[0]:
        raise DataError(f"{path}: maps {cams.shape} do not match keys {keys.tolist()}")
    check_storable(path, cams)
    return keys, cams


def source_manifest(src: str | os.PathLike) -> str:
    """A digest of what identifies every ``.npy`` of a folder of maps without reading them: name, size,
    modification and change times, inode. A file replaced in place changes it, also one copied with its old
    modification time kept (``cp -p``): the change time is set by the system on every write or replacement."""
    lines = []
    for f in sorted(Path(src).glob("*.npy")):
        st = f.stat()
        lines.append(f"{f.name} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_ino}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def write_foreign(path: str | os.PathLike, fmt: str, keys: np.ndarray, cams: np.ndarray) -> None:
    """Write our ``keys`` (0 first) and ``cams`` ``(K+1, H, W)`` as the ``.npy`` dict SIPE's or IRN's tools read
    (atomically). IRN's ``cam`` is ``high_res`` sampled every 4th pixel (its stride-4 maps)."""
    keys, cams = np.asarray(keys, np.int64), np.asarray(cams, np.float32)
    if fmt == "sipe":
        value = {"keys": keys, "IS_CAM": cams}
    elif fmt == "irn":
        fg = cams[1:]
        value = {"keys": keys[1:] - 1, "cam": np.ascontiguousarray(fg[:, ::IRN_STRIDE, ::IRN_STRIDE]), "high_res": fg}
    else:
        raise DataError(f"unknown map format {fmt!r}; known: {', '.join(FORMATS)}")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, value, allow_pickle=True)


def export_maps(cam_dirs, out: str | os.PathLike, fmt: str) -> dict:
    """Every ``<name>.npz`` of ``cam_dirs`` (one folder or the shards of one run) -> ``out/<name>.npy``."""
    from rpc.data.maps import as_dirs, load_cams

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(f for d in as_dirs(cam_dirs) for f in d.glob("*.npz") if not is_temporary(f))
    if not files:
        raise DataError(f"no .npz map files in {', '.join(str(d) for d in as_dirs(cam_dirs))}")
    for f in files:
        keys, cams = load_cams(f)
        write_foreign(out / f"{f.stem}.npy", fmt, keys, cams)
    return {"maps": len(files), "format": fmt, "out": str(out)}


def import_maps(src: str | os.PathLike, out: str | os.PathLike, fmt: str, bg_threshold: float | None = None,
                dataset: str | os.PathLike | None = None, split: str | None = None,
                shard_index: int = 0, num_shards: int = 1) -> dict:  # fmt: skip
    """``src/<name>.npy`` (SIPE or IRN) -> ``out/<name>.npz`` in this project's format. With ``dataset`` and
    ``split``: exactly the split's images are expected, and each map's keys and size are checked against the
    image's labels and size (a clear error naming the file). ``shard_index`` of ``num_shards``: only that shard of
    the images (``rpc.utils.shard``, as the maps stage splits them). ``out`` records where the maps came from.
    The maps are written into a temporary sibling folder that becomes ``out`` only once every map is in: a failed
    import leaves nothing under ``out`` (and an earlier complete ``out`` as it was)."""
    from rpc.data.index import DatasetIndex
    from rpc.data.maps import check_maps, save_cams

    src, out = Path(src), Path(out)
    files = {f.stem: f for f in sorted(src.glob("*.npy"))}
    if not files:
        raise DataError(f"{src}: no .npy map files")
    index = DatasetIndex.load(dataset) if dataset else None
    if index is not None and split:
        names = index.names(split)
        missing = [n for n in names if n not in files]
        if missing:
            raise DataError(f"{src}: no map for {len(missing)} image(s) of split {split!r}, e.g. {missing[0]}.npy")
    else:
        names = list(files)
    names = shard(names, shard_index, num_shards)
    with atomic_dir(out) as tmp:
        write_record(tmp, {"maps": {"imported": fmt, "source": str(src), "bg_threshold": bg_threshold}})
        for name in names:
            keys, cams = read_foreign(files[name], fmt, bg_threshold)
            if index is not None:
                check_maps(files[name], keys, cams, index.label(name), index.image_size(name))
            save_cams(tmp / f"{name}.npz", keys, cams)
    return {"maps": len(names), "format": fmt, "out": str(out)}
