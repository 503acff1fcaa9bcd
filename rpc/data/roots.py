"""Where a dataset's files are: the one check of a VOC or COCO root, used by the preparers and the workflow.

Light on purpose (pathlib only): the Snakefile imports it to stop a dry run early with a clear message.
"""

from __future__ import annotations

import os
from pathlib import Path

from rpc.utils.io import DataError

#: COCO 2014's layout under its root: split -> instances file, and the image folders.
COCO_INSTANCES = {split: f"annotations/instances_{split}.json" for split in ("train2014", "val2014")}
COCO_IMAGES = ("train2014", "val2014")


def find_voc_root(root: str | os.PathLike) -> Path:
    """The folder holding ``JPEGImages/``: ``root`` itself, ``root/VOC2012`` or ``root/VOCdevkit/VOC2012``."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset.root={root}: does not exist (no JPEGImages/ found)")
    for cand in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir():
            return cand
    raise DataError(f"dataset.root={root}: no JPEGImages/ found; expected VOCdevkit/VOC2012 (or a parent)")


def coco_files(root: str | os.PathLike) -> tuple[dict[str, Path], list[Path]]:
    """``({split: instances JSON}, [image folders])`` of a COCO 2014 root; a missing one is named."""
    root = Path(root)
    instances = {split: root / rel for split, rel in COCO_INSTANCES.items()}
    images = [root / d for d in COCO_IMAGES]
    missing = [str(p.relative_to(root)) for p in [*instances.values(), *images] if not p.exists()]
    if missing:
        raise DataError(f"dataset.root={root}: not a COCO 2014 folder, missing {', '.join(missing)}")
    return instances, images


def check_root(kind: str, root: str | os.PathLike | None) -> str | None:
    """The configured root of a ``kind`` (synthetic | voc | coco) dataset, checked; None for synthetic data."""
    if kind == "synthetic":
        return None
    if not root or str(root).lower() in ("null", "none"):  # Snakemake's --config passes null as text
        raise DataError(f"dataset.root is required for dataset.kind={kind} (set it in the config or with --config)")
    if kind == "voc":
        find_voc_root(root)
    elif kind == "coco":
        coco_files(root)
    else:
        raise DataError(f"dataset.kind={kind}: unknown (synthetic, voc or coco)")
    return str(root)
