"""Local.Maps mIoU of stored maps against the ground truth, in the two conventions of docs/method.md.

- ``sipe``: argmax over the map's own background channel (headline numbers).
  Its 95 % interval from a bootstrap over the scored images is ``sipe.bootstrap``
  (``rpc.evaluation.uncertainty``).
- ``irn``: foreground channels only, against a constant background score t swept over 0.00..0.95 (step 0.05;
  IRN's own sweep stops at 0.60, but on other data the best t can lie beyond it); the best t is reported with its
  mIoU, and ``at_edge`` says when it is the first or last value of the sweep (then the range was too narrow).
"""

from __future__ import annotations

import os

import numpy as np
from tqdm import tqdm

from rpc.data.index import DatasetIndex
from rpc.data.maps import as_dirs, check_maps, find_map, load_cams
from rpc.evaluation.confusion import ConfusionMatrix
from rpc.evaluation.uncertainty import bootstrap_miou
from rpc.utils.pool import chunked, map_ordered
from rpc.utils.provenance import read_records

CHUNK = 32  # images per task of the scoring's pool
IRN_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(20))


def labels_from_cams(keys: np.ndarray, cams: np.ndarray, bg_threshold: float | None = None) -> np.ndarray:
    """``(H, W)`` class ids: argmax over ``cams`` (own background) or, with ``bg_threshold``, over the
    foreground channels padded with a constant background score."""
    if bg_threshold is not None:
        cams = np.concatenate([np.full_like(cams[:1], bg_threshold), cams[1:]], 0)
    return keys[np.argmax(cams, axis=0)]


class _Tally:
    """The sums :func:`evaluate_cams` scores from, over some of the split's images (``add`` one image, ``merge``
    the tally of the images that follow)."""

    def __init__(self, num_classes: int):
        self.own = ConfusionMatrix(num_classes, per_image=True)
        self.swept = {t: ConfusionMatrix(num_classes) for t in IRN_THRESHOLDS}
        # diagnostic: a present class whose map is zero everywhere got no seeds (an empty prototype);
        # (empty, total) foreground channels of the final map and (stages, 2) of each stage's
        self.empty = np.zeros(2, np.int64)
        self.empty_stages: np.ndarray | None = None

    def add(self, keys: np.ndarray, cams: np.ndarray, stage_cams: np.ndarray | None, gt: np.ndarray,
            eps: float = 1e-3) -> None:  # fmt: skip
        self.empty += _empty_counts(cams, eps)
        if stage_cams is not None:
            counts = np.stack([_empty_counts(st, eps) for st in stage_cams])
            self.empty_stages = counts if self.empty_stages is None else self.empty_stages + counts
        self.own.update(labels_from_cams(keys, cams), gt)
        # IRN sweep: the foreground argmax is computed once; a pixel is background where its best
        # foreground score does not exceed t (ties go to background, as in labels_from_cams)
        fg_best = cams[1:].max(0) if len(keys) > 1 else np.zeros_like(cams[0])
        fg_label = keys[1:][np.argmax(cams[1:], 0)] if len(keys) > 1 else np.zeros_like(gt)
        for t, cm in self.swept.items():
            cm.update(np.where(fg_best > t, fg_label, 0), gt)

    def merge(self, other: _Tally) -> None:
        self.own.merge(other.own)
        for t, cm in self.swept.items():
            cm.merge(other.swept[t])
        self.empty += other.empty
        if other.empty_stages is not None:
            mine = self.empty_stages
            self.empty_stages = other.empty_stages if mine is None else mine + other.empty_stages


def _empty_counts(cams: np.ndarray, eps: float) -> np.ndarray:
    """``(empty, total)``: foreground channels of ``cams`` ``(K, H, W)`` that never exceed ``eps``, and all of them."""
    return np.array([int((cams[1:].max(axis=(1, 2)) < eps).sum()), len(cams) - 1])


def _tally(index: DatasetIndex, cam_dirs: list, names: list[str]) -> _Tally:
    """The tally of ``names`` (one task of the scoring's pool)."""
    tally = _Tally(index.num_classes)
    for name in names:
        path = find_map(cam_dirs, name)
        keys, cams, stage_cams = load_cams(path, stages=True)
        gt = index.read_mask(name)
        check_maps(path, keys, cams, index.label(name), gt.shape)
        tally.add(keys, cams, stage_cams, gt)
    return tally


def evaluate_cams(dataset_dir: str | os.PathLike, split: str, cam_dirs, workers: int = 1) -> dict:
    """Score the maps of ``split`` found in ``cam_dirs`` (one folder, or the shard folders of one run), in
    ``workers`` processes (the same scores for any count: the images' tallies are merged in list order)."""
    index = DatasetIndex.load(dataset_dir)
    cam_dirs = as_dirs(cam_dirs)
    names = index.names(split)
    pieces = chunked(names, CHUNK)
    with tqdm(total=len(names), desc="eval maps", leave=False) as bar:
        tallies = map_ordered(_tally, [(index, cam_dirs, piece) for piece in pieces], workers,
                              on_done=lambda i: bar.update(len(pieces[i])))  # fmt: skip
    tally = _Tally(index.num_classes)
    for part in tallies:
        tally.merge(part)
    own, swept = tally.own, tally.swept
    sweep = {f"{t:.2f}": cm.miou() for t, cm in swept.items()}
    best = max(sweep, key=sweep.get)
    values = list(sweep.values())
    # the best lies at an end of the sweep and beats its neighbour: a wider range might do better
    at_edge = (best == next(iter(sweep)) and values[0] > values[1]) or (
        best == list(sweep)[-1] and values[-1] > values[-2]
    )
    return {
        "split": split,
        "images": len(names),
        "provenance": read_records(cam_dirs),  # what made the maps (classifier, maps: precision, threads, device)
        "empty_foreground_maps": {
            "final": float(tally.empty[0] / max(tally.empty[1], 1)),
            "stages": None if tally.empty_stages is None else [float(e / max(t, 1)) for e, t in tally.empty_stages],
        },
        # the headline with its evaluation noise: a bootstrap over the scored images
        "sipe": {**own.summary(index.classes), "bootstrap": bootstrap_miou(*own.per_image_counts()),
                 "confusion": own.matrix.tolist()},  # pixels: rows = ground truth, columns = maps' label
        "irn": {"best_threshold": float(best), "best_miou": sweep[best], "sweep": sweep,
                "at_edge": bool(at_edge),
                "per_class_iou": swept[float(best)].summary(index.classes)["per_class_iou"]},
    }  # fmt: skip


def _interval(scores: dict) -> str:
    b = scores["bootstrap"]
    return f"{100 * b['low']:.1f}-{100 * b['high']:.1f}"


def markdown(result: dict, title: str) -> str:
    return (
        f"### {title}\n\n| convention | mIoU (%) |\n|---|---:|\n"
        f"| own background channel (SIPE) | {100 * result['sipe']['miou']:.1f} "
        f"(95% bootstrap interval over images {_interval(result['sipe'])}) |\n"
        f"| constant background t={result['irn']['best_threshold']:.2f} (IRN, best of the sweep 0.00-0.95"
        f"{', at its edge' if result['irn'].get('at_edge') else ''}) | "
        f"{100 * result['irn']['best_miou']:.1f} |\n"
        f"\nForeground maps that are zero everywhere (an empty prototype): "
        f"{100 * result['empty_foreground_maps']['final']:.1f}%\n"
    )
