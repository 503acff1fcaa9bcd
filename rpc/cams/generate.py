"""``make_rs_cams``: multi-scale + flip inference of the trained classifier (METHOD.md, "Localisation maps").

Per image: for each scale, the image and its flip go through the model as one batch (flips fused inside the
model); each scale's map is upsampled bilinearly to the image size; scales are summed; each channel is
max-normalised. Stored as ``<name>.npz`` (no pickle): ``keys`` (int16: 0 and the present classes), ``cams``
(float16 ``(len(keys), H, W)``) and, optionally, ``stage_cams`` (float16 ``(K, len(keys), H, W)``).
"""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from rpc.data.datasets import MultiScaleInferenceSet
from rpc.data.index import DatasetIndex
from rpc.engine.checkpoint import load_model
from rpc.utils.io import DataError, save_npz_atomic

DEFAULT_SCALES = (1.0, 0.5, 1.5, 2.0)


def shard(names: list[str], i: int, n: int) -> list[str]:
    """Shard ``i`` of ``n`` (0-based), interleaved so that shards get similar mixes of images."""
    if not 0 <= i < n:
        raise ValueError(f"shard index {i} outside 0..{n - 1}")
    return names[i::n]


def is_complete(path: Path) -> bool:
    """A map file is complete if it opens and holds ``keys`` and ``cams`` of matching length."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["cams"].shape[0] == z["keys"].shape[0]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return False


def load_cams(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(keys (K,) int, cams (K, H, W) float32)`` with a clear error for a bad file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: map file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["keys"].astype(np.int64), z["cams"].astype(np.float32)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: unreadable map file ({exc})") from exc


def _upsample_sum(maps: list[torch.Tensor], size) -> torch.Tensor:
    return sum(F.interpolate(m, size, mode="bilinear", align_corners=False) for m in maps)


def _max_normalise(x: torch.Tensor) -> torch.Tensor:
    return x / (x.amax(dim=(-2, -1), keepdim=True) + 1e-5)


@torch.inference_mode()
def make_rs_cams(
    model_path: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    split: str,
    out_dir: str | os.PathLike,
    shard_index: int = 0,
    num_shards: int = 1,
    scales=DEFAULT_SCALES,
    save_stages: bool = False,
    device: str = "auto",
    num_workers: int = 2,
    amp: bool = False,
) -> dict:
    """Write maps for shard ``shard_index`` of ``num_shards`` of the split; returns ``{images, skipped,
    images_per_s}``. Complete outputs are skipped; truncated ones are redone."""
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    model, cfg, classes = load_model(model_path, map_location=dev)
    index = DatasetIndex.load(dataset_dir)
    if tuple(classes) != index.classes:
        raise DataError(f"{model_path}: trained on classes {classes}, dataset {dataset_dir} has {list(index.classes)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = shard(index.names(split), shard_index, num_shards)
    todo = [n for n in names if not is_complete(out_dir / f"{n}.npz")]
    loader = DataLoader(MultiScaleInferenceSet(index, todo, scales), batch_size=None, num_workers=num_workers)
    t0 = time.perf_counter()
    for item in tqdm(loader, total=len(todo), desc=f"maps {shard_index}/{num_shards}", dynamic_ncols=True):
        labels = item["label"][None].to(dev)
        finals, stages = [], []
        for x in item["scales"]:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                final, per_stage = model.maps(x.to(dev), labels)
            finals.append(final.float())
            stages.append(torch.stack(per_stage, 0).float())  # (K_stages, 1, C+1, h, w)
        size = tuple(item["size"])
        keys = torch.cat([torch.zeros(1, dtype=torch.long), torch.nonzero(item["label"])[:, 0] + 1]).to(dev)
        cams = _max_normalise(_upsample_sum(finals, size)[0, keys])
        arrays = {"keys": keys.cpu().numpy().astype(np.int16), "cams": cams.cpu().numpy().astype(np.float16)}
        if save_stages:
            st = _upsample_sum([s[:, 0] for s in stages], size)[:, keys]
            arrays["stage_cams"] = _max_normalise(st).cpu().numpy().astype(np.float16)
        save_npz_atomic(out_dir / f"{item['name']}.npz", **arrays)
    elapsed = time.perf_counter() - t0
    return {"images": len(todo), "skipped": len(names) - len(todo),
            "images_per_s": len(todo) / elapsed if todo else float("nan")}  # fmt: skip
