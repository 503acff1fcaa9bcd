"""Part-level evidence: which parts of the objects a map or a pseudo mask covers (paper Sec. 1, Fig. 1).

RPC's claim is that a second, region-specific prototype covers the *sub-discriminative* part of an object
better, without activating more background. The synthetic benchmark writes ``SegmentationPart/<name>.png``
beside its masks (0 background, 1 sub-discriminative part, 2 discriminative part), so the claim can be
measured directly. For a label map (the own-background argmax of a localisation map, or a pseudo mask), pooled
over all pixels of the split:

- ``disc_recall``: share of discriminative-part pixels labelled with their object's class;
- ``sub_recall``: the same on the sub-discriminative part;
- ``bg_false_positive``: share of background pixels labelled with a foreground class;
- ``uncertain`` (pseudo masks): share of pixels of each region labelled 255 (neither recalled nor false).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rpc.data.index import DatasetIndex
from rpc.data.maps import as_dirs, check_maps, find_map, load_cams
from rpc.data.palette import IGNORE_INDEX, read_mask
from rpc.evaluation.local_maps import labels_from_cams
from rpc.utils.io import DataError

PART_BACKGROUND, PART_SUB, PART_DISC = 0, 1, 2
PART_DIR = "SegmentationPart"


class PartCounter:
    """Pixel counts per region (background, sub-discriminative, discriminative) for one kind of label map."""

    def __init__(self):
        self.total = np.zeros(3, np.int64)
        self.hit = np.zeros(3, np.int64)  # regions 1, 2: the right class; region 0: any foreground class
        self.unsure = np.zeros(3, np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray, parts: np.ndarray) -> None:
        """``pred``, ``gt``, ``parts``: ``(H, W)`` label maps of one image (``pred`` may hold 255)."""
        valid = gt != IGNORE_INDEX
        for region in (PART_BACKGROUND, PART_SUB, PART_DISC):
            sel = valid & (parts == region)
            self.total[region] += int(sel.sum())
            self.unsure[region] += int((sel & (pred == IGNORE_INDEX)).sum())
            if region == PART_BACKGROUND:
                self.hit[region] += int((sel & (pred != 0) & (pred != IGNORE_INDEX)).sum())
            else:
                self.hit[region] += int((sel & (pred == gt)).sum())

    def summary(self) -> dict:
        share = self.hit / np.maximum(self.total, 1)
        unsure = self.unsure / np.maximum(self.total, 1)
        return {"disc_recall": float(share[PART_DISC]), "sub_recall": float(share[PART_SUB]),
                "bg_false_positive": float(share[PART_BACKGROUND]),
                "uncertain": {"background": float(unsure[PART_BACKGROUND]), "sub": float(unsure[PART_SUB]),
                              "disc": float(unsure[PART_DISC])},
                "pixels": {"background": int(self.total[0]), "sub": int(self.total[1]),
                           "disc": int(self.total[2])}}  # fmt: skip


def part_dir(index: DatasetIndex) -> Path:
    """``SegmentationPart/`` beside the dataset's first mask folder (only the synthetic benchmark has one)."""
    folder = index.mask_dirs[0].parent / PART_DIR
    if not folder.is_dir():
        raise DataError(f"{folder}: no part masks; part-level scores need the synthetic benchmark's {PART_DIR}/")
    return folder


def evaluate_parts(dataset_dir: str | os.PathLike, split: str, cam_dirs=None, mask_dir=None) -> dict:
    """Part-level scores of the maps in ``cam_dirs`` (final map and each stored stage, own background argmax)
    and of the pseudo masks in ``mask_dir``; either may be None."""
    index = DatasetIndex.load(dataset_dir)
    parts_root = part_dir(index)
    cam_dirs = as_dirs(cam_dirs) if cam_dirs else None
    maps, stages, masks = PartCounter(), None, PartCounter()
    for name in tqdm(index.names(split), desc="part scores", leave=False):
        gt = index.read_mask(name)
        parts = read_mask(parts_root / f"{name}.png", 3)
        if parts.shape != gt.shape:
            raise DataError(f"{parts_root / name}.png: size {parts.shape} differs from the mask {gt.shape}")
        if cam_dirs:
            path = find_map(cam_dirs, name)
            keys, cams, stage_cams = load_cams(path, stages=True)
            check_maps(path, keys, cams, index.label(name), gt.shape)
            maps.update(labels_from_cams(keys, cams), gt, parts)
            if stage_cams is not None:
                stages = stages or [PartCounter() for _ in stage_cams]
                for counter, st in zip(stages, stage_cams, strict=True):
                    counter.update(labels_from_cams(keys, st), gt, parts)
        if mask_dir is not None:
            path = Path(mask_dir) / f"{name}.png"
            if not path.is_file():
                raise DataError(f"{path}: pseudo mask missing for a listed image of split {split}")
            masks.update(read_mask(path, index.num_classes), gt, parts)
    return {
        "split": split,
        "images": len(index.names(split)),
        "maps": maps.summary() if cam_dirs else None,
        "stage_maps": [c.summary() for c in stages] if stages else None,
        "pseudo_masks": masks.summary() if mask_dir is not None else None,
    }
