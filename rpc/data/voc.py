"""PASCAL VOC 2012 (and any dataset in VOC format, such as the synthetic benchmark) -> prepared dataset.

Image-level labels come, per image, from ``Annotations/<name>.xml`` where present, else from the ground-truth
mask, else (real VOC only) from the shipped WSSS label list; an image with none of these is an error.
Split lists come from ``ImageSets/Segmentation/<split>.txt`` where present, else (real VOC only) from the
official lists shipped with the project (train_aug 10582, train 1464, val 1449).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

import numpy as np

from rpc.data.index import DatasetIndex, read_classes, write_prepared
from rpc.data.palette import IGNORE_INDEX, read_mask
from rpc.data.roots import find_voc_root
from rpc.utils.io import DataError, read_list

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

DEFAULT_SPLITS = ("train_aug", "train", "val")


def shipped_voc_file(name: str) -> Path:
    """Path of a file shipped in ``rpc/resources/voc`` (official lists, WSSS image-level labels)."""
    return Path(str(resources.files("rpc") / "resources" / "voc" / name))


def parse_xml_labels(path: str | os.PathLike, classes: list[str] | tuple[str, ...]) -> list[int]:
    """Class ids (1..C) of the objects named in a VOC annotation XML, sorted and unique."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DataError(f"{path}: malformed annotation XML ({exc})") from exc
    lookup = {name: i for i, name in enumerate(classes) if i > 0}
    ids = set()
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in lookup:
            raise DataError(f"{path}: unknown class name {name!r}; known: {', '.join(classes[1:])}")
        ids.add(lookup[name])
    return sorted(ids)


def mask_labels(mask: np.ndarray) -> list[int]:
    """Foreground class ids present in a mask (background 0 and ignore 255 excluded)."""
    values = np.unique(mask)
    return [int(v) for v in values if v not in (0, IGNORE_INDEX)]


def _read_shipped_labels(classes) -> dict[str, list[int]]:
    lookup = {name: i for i, name in enumerate(classes)}
    labels = {}
    for line in shipped_voc_file("image_labels.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, names = line.partition("\t")
        labels[name] = sorted(lookup[n] for n in names.split())
    return labels


def prepare_voc(
    root: str | os.PathLike,
    out: str | os.PathLike,
    splits: tuple[str, ...] = DEFAULT_SPLITS,
    name: str = "voc",
) -> DatasetIndex:
    """Describe a VOC-format dataset in ``out`` (see ``rpc.data.index``); returns the index.

    A ``classes.txt`` at the VOC root ("id name" lines) overrides the 20 VOC classes; without it the shipped
    official lists and labels are the fallback for what the folder lacks.
    """
    voc = find_voc_root(root)
    own_classes = (voc / "classes.txt").is_file()
    classes = read_classes(voc / "classes.txt") if own_classes else list(VOC_CLASSES)
    image_dir = voc / "JPEGImages"
    mask_dirs = [voc / d for d in ("SegmentationClass", "SegmentationClassAug") if (voc / d).is_dir()]

    split_names: dict[str, list[str]] = {}
    for split in splits:
        list_file = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not list_file.is_file():
            if own_classes or not shipped_voc_file(f"{split}.txt").is_file():
                raise DataError(f"{list_file}: split list not found")
            list_file = shipped_voc_file(f"{split}.txt")
        names = read_list(list_file)
        missing = [n for n in names if not (image_dir / f"{n}.jpg").is_file()]
        if missing:
            raise DataError(f"{list_file}: {len(missing)} listed image(s) not in {image_dir}, e.g. {missing[0]}.jpg")
        split_names[split] = names

    shipped = None
    labels: dict[str, list[int]] = {}
    for img in dict.fromkeys(n for names in split_names.values() for n in names):
        xml = voc / "Annotations" / f"{img}.xml"
        mask = next((d / f"{img}.png" for d in mask_dirs if (d / f"{img}.png").is_file()), None)
        if xml.is_file():
            labels[img] = parse_xml_labels(xml, classes)
        elif mask is not None:
            labels[img] = mask_labels(read_mask(mask, len(classes)))
        else:
            if shipped is None:
                shipped = {} if own_classes else _read_shipped_labels(classes)
            if img not in shipped:
                raise DataError(f"{voc}: no labels for listed image {img} (no Annotations XML, no mask)")
            labels[img] = shipped[img]
    return write_prepared(Path(out), name, classes, [image_dir], ".jpg", mask_dirs, split_names, labels)
