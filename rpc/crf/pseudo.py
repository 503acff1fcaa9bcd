"""Pseudo masks: localisation maps -> two-pass confident dense-CRF labelling.

docs/method.md "Pseudo masks"; SIPE ``cam2ir``.

Per image, over its own labels only (``keys`` = 0 and the present classes):

1. ``fg_conf`` = CRF of argmax(maps) (the maps as they are);
2. ``bg_conf`` = CRF of argmax(maps with the background channel x0.5) (background shrinks, foreground grows);
3. label = ``fg_conf`` where it is foreground; 0 where both passes say background; 255 (uncertain) elsewhere.

:func:`make_pseudo_masks` runs this over a split in a process pool, skips images whose PNG exists (resume) and
writes each PNG atomically. A worker that dies (killed, out of memory) ends the run with an error naming the
images it may have been processing, instead of a wait until the job's time limit.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from rpc.data.index import DatasetIndex
from rpc.data.maps import as_dirs, check_maps, check_no_strays, find_map, load_cams
from rpc.data.palette import IGNORE_INDEX, is_valid_mask, write_mask
from rpc.models.dense_crf import PSEUDO_MASK_CRF, CRFParams, crf_from_labels
from rpc.utils.pool import run_bounded
from rpc.utils.progress import ImageProgress
from rpc.utils.provenance import read_records, write_record
from rpc.utils.shard import shard
from rpc.utils.workdir import file_identity, staged_outputs

BG_SCALE = 0.5


def confident_labels(image: np.ndarray, keys: np.ndarray, cams: np.ndarray, p: CRFParams = PSEUDO_MASK_CRF):
    """``image (H, W, 3)`` uint8, ``keys (K,)`` class ids (keys[0] == 0), ``cams (K, H, W)`` -> ``(H, W)`` uint8
    pseudo mask with class ids and 255 for uncertain pixels."""
    fg_pass = crf_from_labels(image, np.argmax(cams, 0), len(keys), p)
    shrunk = cams.copy()
    shrunk[0] *= BG_SCALE
    bg_pass = crf_from_labels(image, np.argmax(shrunk, 0), len(keys), p)
    fg_conf, bg_conf = keys[fg_pass], keys[bg_pass]
    mask = np.where(fg_conf > 0, fg_conf, IGNORE_INDEX)
    mask[(fg_conf == 0) & (bg_conf == 0)] = 0
    return mask.astype(np.uint8)


# Worker state, set once per process by the pool initialiser (the index is not pickled per task).
_STATE: dict = {}


def _init_worker(dataset_dir: str, cam_dirs: list[Path], out_dir: Path, params: CRFParams) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _STATE.update(index=DatasetIndex.load(dataset_dir), cam_dirs=cam_dirs, out_dir=out_dir, params=params)


def _process(name: str) -> float:
    """One image, end to end; returns the seconds spent in the two CRF passes."""
    index: DatasetIndex = _STATE["index"]
    path = find_map(_STATE["cam_dirs"], name)
    keys, cams = load_cams(path)
    image = index.read_image(name)
    check_maps(path, keys, cams, index.label(name), image.shape[:2])
    t0 = time.perf_counter()
    mask = confident_labels(image, keys, cams, _STATE["params"])
    crf_s = time.perf_counter() - t0
    write_mask(_STATE["out_dir"] / f"{name}.png", mask)
    return crf_s


def make_pseudo_masks(
    dataset_dir: str | os.PathLike,
    split: str,
    cam_dirs,
    out_dir: str | os.PathLike,
    *,
    workers: int = 1,
    shard_index: int = 0,
    num_shards: int = 1,
    params: CRFParams = PSEUDO_MASK_CRF,
    allow_extra_maps: bool = False,
    work_dir: str | os.PathLike | None = None,
) -> dict:
    """Pseudo masks ``out_dir/<name>.png`` for shard ``shard_index`` of ``num_shards`` of ``split``, with maps
    read from ``cam_dirs`` (one folder or the shard folders of one run). With ``work_dir`` the masks are written
    there and moved to ``out_dir`` when the shard is complete (``rpc.utils.workdir.staged_outputs``). Returns
    timings: ``{images, skipped, wall_s, crf_s, images_per_s}`` (``crf_s``: total time inside the CRF passes)."""
    index = DatasetIndex.load(dataset_dir)
    cam_dirs = as_dirs(cam_dirs)
    listed = index.names(split)
    if not allow_extra_maps:
        check_no_strays(cam_dirs, set(listed), split)
    names = shard(listed, shard_index, num_shards)
    for n in names:  # fail before any work (and before claiming the output) if a map is missing
        find_map(cam_dirs, n)
    settings = {"maps": [file_identity(d) for d in cam_dirs], "dataset": str(index.root), "split": split,
                "shard": [shard_index, num_shards], "crf": dataclasses.asdict(params)}  # fmt: skip
    with staged_outputs({"masks": out_dir}, work_dir, settings) as folders:
        masks = folders["masks"]
        write_record(masks, read_records(cam_dirs))  # the CRF runs in float64 numpy: the maps' record is what varies
        progress = ImageProgress(names, lambda n: is_valid_mask(masks / f"{n}.png", index.num_classes),
                                 f"crf {shard_index}/{num_shards}")  # fmt: skip
        init = (str(index.root), cam_dirs, masks, params)
        crf_s = [0.0]

        def done(name: str, seconds: float) -> None:
            crf_s[0] += seconds
            progress.update()

        with progress:
            run_bounded(_process, ((n, (n,)) for n in progress.todo), workers, done, _init_worker, init)
    return progress.result(crf_s=crf_s[0])
