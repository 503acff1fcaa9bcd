"""The predictions' CRF post-processing, without torch or mmseg (so a spawned worker, or a CPU job of its own,
starts in a fraction of a second): one image (:func:`refine_and_write`), or a whole shard of a split from the
class scores ``seg-predict --scores-out`` stored (:func:`refine_predictions`, the workflow's ``crf_predictions``
jobs, on CPUs while the GPU predicts the next shard).

Stored scores are map files (``rpc.data.maps``, plus ``num_classes``): ``keys`` = the classes whose score
reaches ``KEEP`` somewhere in the image, ``cams`` = their averaged softmax scores ``(len(keys), H, W)`` in 65535
levels of [0, 1] (one scale for all: not each class's own range). A class left out reads as score 0 everywhere:
its unary was already at least -log(KEEP) at every pixel, and the CRF's pairwise terms only spread the labels of
neighbours, so it could not win a pixel either way; the masks agree with the CRF of the full scores (test).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from rpc.data.index import DatasetIndex
from rpc.data.maps import LEVELS, as_dirs, check_no_strays, check_storable, find_map, load_cams, row_deltas
from rpc.data.palette import is_valid_mask, write_mask
from rpc.models.dense_crf import SEGMENTATION_CRF, CRFParams, crf_from_probs
from rpc.utils.io import DataError, save_npz_atomic
from rpc.utils.pool import run_bounded
from rpc.utils.progress import ImageProgress
from rpc.utils.provenance import read_records, write_record
from rpc.utils.shard import shard
from rpc.utils.workdir import file_identity, staged_outputs


def refine_and_write(image: np.ndarray, probs: np.ndarray, params: CRFParams, path: Path) -> float:
    """``image (H, W, 3)`` uint8, ``probs (K, H, W)`` float32 softmax scores -> the CRF's ``argmax`` written to
    ``path`` as a label PNG; returns the seconds spent in the CRF."""
    t0 = time.perf_counter()
    refined = crf_from_probs(image, probs, params)
    seconds = time.perf_counter() - t0
    write_mask(path, refined.argmax(0).astype(np.uint8))
    return seconds


KEEP = 1e-3  # a class is stored where its score reaches this at some pixel (the argmax's always do: >= 1 / K)


def save_scores(path: Path, probs: np.ndarray) -> None:
    """One image's ``probs (K, H, W)`` (softmax scores of every class, in [0, 1]) -> ``path``, atomically."""
    check_storable(path, probs, "scores")
    keys = np.flatnonzero(probs.reshape(len(probs), -1).max(1) >= KEEP)
    levels = np.rint(np.clip(probs[keys], 0.0, 1.0) * LEVELS).astype(np.uint16)
    scale = np.full(len(keys), 1 / LEVELS, np.float32)
    save_npz_atomic(path, compress=True, keys=keys.astype(np.int16), cams=row_deltas(levels), cams_scale=scale,
                    num_classes=np.int16(len(probs)))  # fmt: skip


def load_scores(path: Path, num_classes: int, size: tuple[int, int]) -> np.ndarray:
    """``(K, H, W)`` float32 scores of :func:`save_scores` (0 for the classes left out), checked against the
    dataset's ``num_classes`` and the image's ``(H, W)``: a file of another dataset or image is a DataError."""
    keys, kept = load_cams(path)
    with np.load(path, allow_pickle=False) as z:
        stored = int(z["num_classes"]) if "num_classes" in z.files else None
    if stored != num_classes:
        raise DataError(f"{path}: scores of {stored} classes, the dataset has {num_classes}; scores are written by "
                        "`seg-predict --scores-out` with a model of this dataset")  # fmt: skip
    if kept.shape[1:] != tuple(size):
        raise DataError(f"{path}: scores of size {kept.shape[1:]}, the image is {tuple(size)}")
    probs = np.zeros((num_classes, *size), np.float32)
    probs[keys] = kept
    return probs


# Worker state, set once per process by the pool initialiser (the index is not pickled per task).
_STATE: dict = {}


def _init_worker(dataset_dir: str, score_dirs: list[Path], out_dir: Path, params: CRFParams) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _STATE.update(index=DatasetIndex.load(dataset_dir), score_dirs=score_dirs, out_dir=out_dir, params=params)


def _refine(name: str) -> float:
    index: DatasetIndex = _STATE["index"]
    image = index.read_image(name)
    probs = load_scores(find_map(_STATE["score_dirs"], name), index.num_classes, image.shape[:2])
    return refine_and_write(image, probs, _STATE["params"], _STATE["out_dir"] / f"{name}.png")


def refine_predictions(
    dataset_dir: str | os.PathLike,
    split: str,
    score_dirs,
    out_dir: str | os.PathLike,
    *,
    workers: int = 1,
    shard_index: int = 0,
    num_shards: int = 1,
    params: CRFParams = SEGMENTATION_CRF,
    work_dir: str | os.PathLike | None = None,
) -> dict:
    """CRF-refined predictions ``out_dir/<name>.png`` of shard ``shard_index`` of ``num_shards`` of ``split``,
    from the scores in ``score_dirs`` (one folder or several) in ``workers`` processes; the same masks as
    ``seg-predict --crf-out``. Finished masks are skipped (resume); with ``work_dir`` they are kept there until the
    shard is done. Returns ``{images, skipped, wall_s, images_per_s, crf_s}``."""
    index = DatasetIndex.load(dataset_dir)
    score_dirs = as_dirs(score_dirs)
    check_no_strays(score_dirs, set(index.names(split)), split)
    names = shard(index.names(split), shard_index, num_shards)
    for n in names:  # every score file first: a missing one fails before any work
        find_map(score_dirs, n)
    settings = {"scores": [file_identity(d) for d in score_dirs], "dataset": str(index.root), "split": split,
                "shard": [shard_index, num_shards], "crf": dataclasses.asdict(params)}  # fmt: skip
    with staged_outputs({"crf": out_dir}, work_dir, settings) as folders:
        masks = folders["crf"]
        write_record(masks, read_records(score_dirs))  # the CRF runs in float64 numpy: the model's record varies
        progress = ImageProgress(names, lambda n: is_valid_mask(masks / f"{n}.png", index.num_classes),
                                 f"crf {shard_index}/{num_shards}")  # fmt: skip
        crf_s = [0.0]

        def done(name: str, seconds: float) -> None:
            crf_s[0] += seconds
            progress.update()

        with progress:
            run_bounded(_refine, ((n, (n,)) for n in progress.todo), workers, done, _init_worker,
                        (str(index.root), score_dirs, masks, params))  # fmt: skip
    return progress.result(crf_s=crf_s[0])
