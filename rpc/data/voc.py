"""PASCAL VOC 2012 (and any dataset in VOC format, such as the synthetic benchmark) -> prepared dataset.

Every listed image and mask is read once at preparation (decoded whole, mode, values and size checked); image-level
labels come from ``Annotations/<name>.xml`` and the ground-truth mask, which must agree where both exist (or one is
chosen: ``labels_from``), else (real VOC only) from the shipped WSSS label list; an image with none is an error.
Split lists come from ``ImageSets/Segmentation/<split>.txt`` where present, else (real VOC only) from the
official lists shipped with the project (train_aug 10582, train 1464, val 1449).
"""

from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from rpc.data.index import DatasetIndex, check_image, read_classes, write_prepared
from rpc.data.palette import IGNORE_INDEX, read_mask
from rpc.data.roots import find_voc_root
from rpc.utils.io import DataError, read_list
from rpc.utils.pool import run_bounded

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


def read_shipped_labels(classes) -> dict[str, list[int]]:
    lookup = {name: i for i, name in enumerate(classes)}
    labels = {}
    for line in shipped_voc_file("image_labels.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, names = line.partition("\t")
        labels[name] = sorted(lookup[n] for n in names.split())
    return labels


@functools.cache
def voc2012_ids() -> frozenset[str]:
    """Every image id of PASCAL VOC 2012's official lists (train_aug, train, val, test) shipped here."""
    ids = set()
    for split in ("train_aug", "train", "val", "test"):
        if shipped_voc_file(f"{split}.txt").is_file():
            ids.update(read_list(shipped_voc_file(f"{split}.txt")))
    return frozenset(ids)


LABEL_SOURCES = ("agree", "xml", "masks")


def _inside(path: Path, root: Path) -> Path:
    """``path`` resolved; a file that is (or is reached through) a link out of the dataset root is refused."""
    real = path.resolve()
    if not real.is_relative_to(root):
        raise DataError(f"{path}: links to {real}, outside the dataset root {root}")
    return real


def check_image_and_mask(image: Path, mask: Path | None, num_classes: int,
                         root: Path) -> tuple[tuple[int, int], list[int] | None]:  # fmt: skip
    """Read one listed image whole and its mask (if any): ``((H, W), the mask's foreground class ids or None)``.

    The image must decode (every pixel, not only the header), be 8 bits per channel and carry no EXIF rotation
    (:func:`rpc.data.index.check_image`); the mask must be a palette or grayscale PNG with values in
    ``0..num_classes-1`` or 255 and the image's size. Neither may be a link out of ``root``. Any fault is a
    :class:`DataError` naming the file."""
    _inside(image, root)
    try:
        with Image.open(image) as img:
            check_image(img, image)
            img.load()
            size = (img.height, img.width)
    except (OSError, SyntaxError, ValueError) as exc:  # PIL: truncated or undecodable data
        why = str(exc).replace(f" {str(image)!r}", "").replace(str(image), "it") or type(exc).__name__
        raise DataError(f"{image}: unreadable image ({why})") from None
    if mask is None:
        return size, None
    _inside(mask, root)
    values = read_mask(mask, num_classes)
    if values.shape != size:
        raise DataError(f"{mask}: mask is {values.shape[1]}x{values.shape[0]} (WxH), its image {image.name} is "
                        f"{size[1]}x{size[0]}")  # fmt: skip
    return size, mask_labels(values)


def _check_task(args):
    return check_image_and_mask(*args)


def _names(classes, ids) -> str:
    return "{" + ", ".join(classes[i] for i in ids) + "}"


def prepare_voc(
    root: str | os.PathLike,
    out: str | os.PathLike,
    splits: tuple[str, ...] = DEFAULT_SPLITS,
    name: str = "voc",
    labels_from: str = "agree",
    masks_for: tuple[str, ...] = (),
    workers: int = 1,
) -> DatasetIndex:
    """Describe a VOC-format dataset in ``out`` (see ``rpc.data.index``); returns the index.

    Every listed image and every mask is read once, here, before any training (:func:`check_image_and_mask`,
    ``workers`` processes); the images' sizes are recorded. ``masks_for``: splits whose every image needs a mask
    (the scored ones).

    Classes: a ``classes.txt`` at the VOC root ("id name" lines, names unique). Without one the folder must be
    PASCAL VOC 2012 itself (its 20 classes): every listed id an official VOC id or described by an annotation XML
    naming VOC classes; anything else is an error asking for ``classes.txt``. The shipped official lists and
    labels are then the fallback for what the folder lacks.

    Image labels (``labels_from``): ``agree`` (default): from ``Annotations/<id>.xml`` and from the mask; where
    both exist they must name the same classes. ``xml``: the XML where present, else the mask (the convention of
    WSSS works on VOC, whose XMLs and SBD masks disagree on a few images). ``masks``: the mask where present.
    """
    if labels_from not in LABEL_SOURCES:
        raise DataError(f"labels from {labels_from!r}: must be one of {', '.join(LABEL_SOURCES)}")
    voc = find_voc_root(root)
    real_root = voc.resolve()
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

    images = list(dict.fromkeys(n for names in split_names.values() for n in names))
    xmls = {img: voc / "Annotations" / f"{img}.xml" for img in images}
    xmls = {img: p for img, p in xmls.items() if p.is_file()}
    if not own_classes:
        foreign = [img for img in images if img not in xmls and img not in voc2012_ids()]
        if foreign:
            raise DataError(f"{voc / 'classes.txt'}: not found, and {foreign[0]} (one of {len(foreign)} listed "
                            f"images) is not a PASCAL VOC 2012 image: a VOC-format folder with its own classes needs "
                            f"a classes.txt ('0 background', '1 <name>', ... one line per class)")  # fmt: skip
    masks = {}
    for img in images:
        mask = next((d / f"{img}.png" for d in mask_dirs if (d / f"{img}.png").is_file()), None)
        if mask is not None:
            masks[img] = mask
    for split in masks_for:
        lacking = [n for n in split_names.get(split, []) if n not in masks]
        if lacking:
            raise DataError(f"{voc}: {len(lacking)} image(s) of split {split!r} have no mask in "
                            f"{' or '.join(d.name for d in mask_dirs) or 'SegmentationClass'}, e.g. {lacking[0]}.png")

    tasks = [(img, (image_dir / f"{img}.jpg", masks.get(img), len(classes), real_root)) for img in images]
    checked: dict[str, tuple] = {}
    run_bounded(_check_task, ((img, (args,)) for img, args in tasks), workers,
                lambda img, result: checked.__setitem__(img, result), what="image check")  # fmt: skip
    sizes = {img: checked[img][0] for img in images}

    shipped = None
    labels: dict[str, list[int]] = {}
    for img in images:
        from_xml = parse_xml_labels(xmls[img], classes) if img in xmls else None
        from_mask = checked[img][1]
        if from_xml is not None and from_mask is not None and from_xml != from_mask and labels_from == "agree":
            raise DataError(f"{xmls[img]}: names {_names(classes, from_xml)} but the mask {masks[img]} holds "
                            f"{_names(classes, from_mask)}; fix one, or choose the source of image labels "
                            f"(config dataset.labels_from, or prepare-voc --labels-from: xml | masks)")  # fmt: skip
        first, second = (from_mask, from_xml) if labels_from == "masks" else (from_xml, from_mask)
        chosen = first if first is not None else second
        if chosen is None:
            if shipped is None:
                shipped = {} if own_classes else read_shipped_labels(classes)
            if img not in shipped:
                raise DataError(f"{voc}: no labels for listed image {img} (no Annotations XML, no mask)")
            chosen = shipped[img]
        labels[img] = chosen
    return write_prepared(Path(out), name, classes, [image_dir], ".jpg", mask_dirs, split_names, labels, sizes)
