"""MS COCO 2014 instance annotations -> prepared dataset with per-image semantic masks.

- Classes: background 0 and the 80 categories as contiguous ids 1..80 in the order of their official ids.
- Masks: painted with pycocotools' ``annToMask``, largest instance first so that smaller objects stay
  visible where instances overlap. Crowd regions (``iscrowd=1``) are painted with their class, like any
  other instance, so that every annotated category appears in the mask and the image-level labels equal the
  classes of the mask (the usual convention of WSSS COCO masks).
- Image-level labels: the categories of all annotations of the image (crowd included).
- Lists: one per annotation file, named after it (``train2014``, ``val2014``): the images with at least one
  annotation, sorted by id (the lists used by WSSS works).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from rpc.data.index import DatasetIndex, write_prepared
from rpc.data.palette import write_mask
from rpc.utils.io import DataError
from rpc.utils.workdir import file_identity, staged_outputs


def coco_classes(categories: list[dict]) -> tuple[list[str], dict[int, int]]:
    """``(class names with background first, {official category id: contiguous id 1..C}``."""
    cats = sorted(categories, key=lambda c: c["id"])
    names = ["background"] + [c["name"].replace(" ", "_") for c in cats]
    return names, {c["id"]: i + 1 for i, c in enumerate(cats)}


def _load(path: Path):
    from pycocotools.coco import COCO

    if not path.is_file():
        raise DataError(f"{path}: COCO instances file not found")
    try:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: malformed COCO instances file ({exc!r})") from exc


def semantic_mask(coco, img_id: int, cat_to_class: dict[int, int]) -> np.ndarray:
    """``(H, W)`` uint8 semantic mask of one image (see the module docstring for the painting order)."""
    info = coco.imgs[img_id]
    mask = np.zeros((info["height"], info["width"]), dtype=np.uint8)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id], iscrowd=None))
    for ann in sorted(anns, key=lambda a: -a["area"]):
        mask[coco.annToMask(ann) > 0] = cat_to_class[ann["category_id"]]
    return mask


_WORKER = {}


def _init_worker(path: str, cat_to_class: dict[int, int], mask_dir: str, coco=None):
    coco = coco if coco is not None else _load(Path(path))
    _WORKER.update(coco=coco, cat_to_class=cat_to_class, mask_dir=Path(mask_dir))


def _write_one(img_id: int) -> None:
    coco = _WORKER["coco"]
    out = _WORKER["mask_dir"] / (Path(coco.imgs[img_id]["file_name"]).stem + ".png")
    if not out.is_file():  # resumable: finished masks are kept (each was written atomically)
        write_mask(out, semantic_mask(coco, img_id, _WORKER["cat_to_class"]))


def prepare_coco(
    instances: dict[str, str | os.PathLike],
    image_dirs: list[str | os.PathLike],
    out: str | os.PathLike,
    workers: int = 1,
    name: str = "coco",
    work_dir: str | os.PathLike | None = None,
) -> DatasetIndex:
    """Prepare COCO in ``out``: ``instances`` maps split name -> instances JSON; images are searched in
    ``image_dirs``. Masks go to ``out/SegmentationClass``; ``workers`` processes paint them. With ``work_dir``
    they are painted there and moved into ``out`` at the end, so a killed preparation resumes even when ``out``
    was deleted in between (Snakemake deletes it before rerunning the job)."""
    out = Path(out)
    image_dirs = [Path(d) for d in image_dirs]
    for d in image_dirs:
        if not d.is_dir():
            raise DataError(f"{d}: COCO image folder not found")
    final_masks = out / "SegmentationClass"
    settings = {"instances": {k: file_identity(v) for k, v in instances.items()}}
    with staged_outputs({"masks": final_masks}, work_dir, settings) as folders:  # published when all are painted
        classes, splits, labels = _paint_splits(instances, image_dirs, folders["masks"], workers)
    return write_prepared(out, name, classes, image_dirs, ".jpg", [final_masks], splits, labels)


def _paint_splits(instances: dict, image_dirs: list[Path], mask_dir: Path, workers: int):
    """Masks of every split into ``mask_dir`` (existing ones kept); returns ``(classes, splits, labels)``."""
    classes, splits, labels = None, {}, {}
    for split, path in instances.items():
        coco = _load(Path(path))
        split_classes, cat_to_class = coco_classes(coco.loadCats(coco.getCatIds()))
        if classes is None:
            classes = split_classes
        elif split_classes != classes:
            raise DataError(f"{path}: categories differ from those of the other splits")
        ids = sorted(i for i in coco.imgs if coco.getAnnIds(imgIds=[i], iscrowd=None))
        names = []
        for img_id in ids:
            stem = Path(coco.imgs[img_id]["file_name"]).stem
            if not any((d / coco.imgs[img_id]["file_name"]).is_file() for d in image_dirs):
                raise DataError(f"{path}: image {coco.imgs[img_id]['file_name']} not found in {image_dirs}")
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id], iscrowd=None))
            labels[stem] = sorted({cat_to_class[a["category_id"]] for a in anns})
            names.append(stem)
        splits[split] = names
        # the annotations are parsed once, here: forked workers share this process's index (copy-on-write)
        # instead of each parsing the instances file again
        _init_worker(str(path), cat_to_class, str(mask_dir), coco=coco)
        if workers > 1:
            with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
                list(pool.map(_write_one, ids, chunksize=64))
        else:
            for img_id in ids:
                _write_one(img_id)
    return classes, splits, labels
