"""Scoring a folder of predicted label masks (pseudo masks, segmentation predictions) against ground truth."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rpc.data.index import DatasetIndex
from rpc.data.palette import IGNORE_INDEX, read_mask
from rpc.evaluation.confusion import ConfusionMatrix, markdown_table
from rpc.evaluation.uncertainty import bootstrap_miou
from rpc.utils.io import DataError, write_json_atomic, write_text_atomic
from rpc.utils.pool import chunked, map_ordered
from rpc.utils.provenance import read_records

UNCERTAIN_CONVENTIONS = ("background", "ignore")
CHUNK = 32  # images per task of the scoring's pool


def _tally(index: DatasetIndex, pred_dir: Path, names: list[str], uncertain: str) -> tuple[ConfusionMatrix, int, int]:
    """``(confusion matrix, uncertain pixels, pixels)`` of the predictions of ``names`` (one task of the pool)."""
    cm = ConfusionMatrix(index.num_classes, per_image=True)
    uncertain_pixels = total = 0
    for name in names:
        pred_path = pred_dir / f"{name}.png"
        pred = read_mask(pred_path, index.num_classes)
        gt = index.read_mask(name)
        if pred.shape != gt.shape:
            raise DataError(f"{pred_path}: size {pred.shape} differs from ground truth {gt.shape}")
        unsure = pred == IGNORE_INDEX
        uncertain_pixels += int(unsure.sum())
        total += pred.size
        if uncertain == "ignore":
            gt = np.where(unsure, IGNORE_INDEX, gt)
        cm.update(np.where(unsure, 0, pred), gt)
    return cm, uncertain_pixels, total


def evaluate_mask_dir(
    index: DatasetIndex, split: str, pred_dir: str | os.PathLike, uncertain: str = "background", workers: int = 1
) -> dict:
    """mIoU of ``pred_dir/<name>.png`` over the split's images, in ``workers`` processes (the same scores for
    any count).

    Predicted 255 ("uncertain") pixels count as background with ``uncertain="background"`` (SIPE convention
    for pseudo masks) or are left out with ``uncertain="ignore"``. Also reports the fraction of 255 pixels.
    """
    if uncertain not in UNCERTAIN_CONVENTIONS:
        raise ValueError(f"uncertain must be one of {UNCERTAIN_CONVENTIONS}, got {uncertain!r}")
    pred_dir = Path(pred_dir)
    names = index.names(split)
    missing = [n for n in names if not (pred_dir / f"{n}.png").is_file()]
    if missing:
        raise DataError(f"{pred_dir}: {len(missing)} prediction(s) missing for split {split}, e.g. {missing[0]}.png")
    pieces = chunked(names, CHUNK)
    with tqdm(total=len(names), desc=f"eval {pred_dir.name}", leave=False) as bar:
        parts = map_ordered(_tally, [(index, pred_dir, piece, uncertain) for piece in pieces], workers,
                            on_done=lambda i: bar.update(len(pieces[i])))  # fmt: skip
    cm = ConfusionMatrix(index.num_classes, per_image=True)
    for part, _, _ in parts:
        cm.merge(part)
    uncertain_pixels, total = sum(p[1] for p in parts), sum(p[2] for p in parts)
    result = cm.summary(index.classes)
    result["confusion"] = cm.matrix.tolist()  # pixels: rows = ground truth, columns = predicted label
    result.update(split=split, images=len(names), uncertain=uncertain,
                  uncertain_fraction=uncertain_pixels / max(total, 1),
                  bootstrap=bootstrap_miou(*cm.per_image_counts()),
                  provenance=read_records([pred_dir]))  # fmt: skip
    return result


def write_report(result: dict, json_path: str | os.PathLike, md_path: str | os.PathLike | None, title: str):
    write_json_atomic(json_path, result)
    if md_path is not None:
        write_text_atomic(md_path, markdown_table(result, title))
