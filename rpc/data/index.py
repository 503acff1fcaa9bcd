"""One description for every dataset: a prepared folder holding ``dataset.json``.

Preparers (``rpc.data.voc``, ``rpc.data.coco``; the synthetic generator writes VOC format) turn a raw dataset
into a folder with::

    dataset.json        image/mask folders, the class file, the split lists, the labels file
    classes.txt         "id name" per line, 0 = background
    lists/<split>.txt   one image name per line
    image_labels.tsv    "name<TAB>class ids (1..C, space separated)" per line
    image_sizes.tsv     "name<TAB>height width" per line (written by preparers that read every image)

Everything downstream (training, maps, CRF, evaluation) reads only this description, so VOC, COCO and the
synthetic benchmark share one code path and the number and names of classes come from the dataset.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from rpc.data.palette import read_mask
from rpc.utils.io import DataError, read_list, write_json_atomic, write_list, write_text_atomic

DATASET_FILE = "dataset.json"
SIZES_FILE = "image_sizes.tsv"


def read_classes(path: str | os.PathLike) -> list[str]:
    """Read ``id name`` lines (ids 0..C contiguous, 0 = background, names unique)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: class file not found")
    classes = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        idx, _, name = line.strip().partition(" ")
        if not idx.isdigit() or int(idx) != len(classes) or not name.strip():
            raise DataError(f"{path}:{lineno}: expected 'id name' with id {len(classes)}, found {line!r}")
        name = name.strip()
        if name in classes:
            raise DataError(f"{path}:{lineno}: class name {name!r} is also class {classes.index(name)}: names must "
                            f"be unique")  # fmt: skip
        classes.append(name)
    if len(classes) < 2:
        raise DataError(f"{path}: needs background and at least one class, found {len(classes)} entries")
    return classes


def write_classes(path: str | os.PathLike, classes: list[str]) -> None:
    write_text_atomic(path, "".join(f"{i} {name}\n" for i, name in enumerate(classes)))


def read_labels(path: str | os.PathLike, num_classes: int) -> dict[str, np.ndarray]:
    """Read ``name<TAB>ids`` lines into ``{name: (C,) float32 multi-hot}`` with C = num_classes - 1."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image-level labels file not found")
    labels = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, _, ids = line.partition("\t")
        try:
            class_ids = [int(t) for t in ids.split()]
        except ValueError:
            raise DataError(f"{path}:{lineno}: class ids must be integers, found {ids!r}") from None
        if any(not 1 <= c < num_classes for c in class_ids):
            raise DataError(f"{path}:{lineno}: class ids {class_ids} outside 1..{num_classes - 1}")
        labels[name.strip()] = multi_hot(class_ids, num_classes)
    return labels


def write_labels(path: str | os.PathLike, labels: dict[str, list[int]]) -> None:
    lines = ["# name\tforeground class ids (1..C) present in the image\n"]
    lines += [f"{name}\t{' '.join(str(c) for c in sorted(ids))}\n" for name, ids in labels.items()]
    write_text_atomic(path, "".join(lines))


def multi_hot(class_ids, num_classes: int) -> np.ndarray:
    """Class ids 1..C -> ``(C,)`` float32 multi-hot over foreground classes (background excluded)."""
    y = np.zeros(num_classes - 1, dtype=np.float32)
    for c in class_ids:
        y[c - 1] = 1.0
    return y


EIGHT_BIT_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")
EXIF_ORIENTATION = 0x0112


def check_image(img: Image.Image, path: Path) -> None:
    """Refuse what two readers would read differently: an EXIF orientation other than 1 (PIL, which the maps,
    the CRF and the predictions use, ignores it; OpenCV, mmseg's loader for DeepLab training, applies it: the image
    would turn against its mask) and more than 8 bits per channel (PIL and OpenCV scale 16-bit data differently)."""
    orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    if orientation != 1:
        raise DataError(f"{path}: EXIF orientation {orientation} (the pixels are stored rotated or flipped); readers "
                        f"disagree on it: rotate the pixels and drop the tag (e.g. `exiftran -ai`)")  # fmt: skip
    if img.mode not in EIGHT_BIT_MODES:
        raise DataError(f"{path}: image mode {img.mode}: only 8 bits per channel are read the same way everywhere")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as ``(H, W, 3)`` uint8 RGB, with a clear error for a missing, broken, EXIF-rotated or
    16-bit file (:func:`check_image`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image not found")
    try:
        with Image.open(path) as img:
            check_image(img, path)
            return np.asarray(img.convert("RGB"))
    except OSError as exc:
        raise DataError(f"{path}: unreadable image ({exc})") from exc


def check_image_file(path: str | os.PathLike) -> None:
    """:func:`check_image` from the file's header alone (no pixels decoded)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            check_image(img, path)
    except OSError as exc:
        raise DataError(f"{path}: unreadable image ({exc})") from exc


@dataclass(frozen=True)
class DatasetIndex:
    """A prepared dataset: where its images, masks, lists and labels are.

    ``classes[0]`` is background; foreground classes are 1..C. ``mask_dirs`` are searched in order (VOC keeps
    the official masks in SegmentationClass and the SBD-augmented ones in SegmentationClassAug).
    """

    root: Path
    name: str
    classes: tuple[str, ...]
    image_dirs: tuple[Path, ...]
    image_suffix: str
    mask_dirs: tuple[Path, ...]
    splits: dict[str, Path] = field(default_factory=dict)
    labels_file: Path | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes including background (VOC: 21, COCO: 81)."""
        return len(self.classes)

    # -- loading ------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, root: str | os.PathLike) -> DatasetIndex:
        import json

        root = Path(root)
        desc_path = root / DATASET_FILE
        if not desc_path.is_file():
            raise DataError(
                f"{desc_path}: not a prepared dataset; prepare it first: "
                "`python -m rpc prepare-voc --root <VOCdevkit/VOC2012> --out <folder>` for a VOC-format folder, "
                "`python -m rpc prepare-coco --root <coco> --out <folder>` for COCO, "
                "`python -m rpc synth --out <raw> --prepared <folder>` for the synthetic data; "
                "then pass <folder> as --dataset"
            )
        try:
            desc = json.loads(desc_path.read_text())
            return cls(
                root=root,
                name=desc["name"],
                classes=tuple(read_classes(root / desc["classes"])),
                image_dirs=_find_dirs(desc_path, "image", desc["image_dirs"], desc.get("image_dirs_relative")),
                image_suffix=desc["image_suffix"],
                mask_dirs=_find_dirs(desc_path, "mask", desc["mask_dirs"], desc.get("mask_dirs_relative")),
                splits={k: root / v for k, v in desc["splits"].items()},
                labels_file=root / desc["labels"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"{desc_path}: malformed dataset description ({exc!r})") from exc

    def save(self) -> None:
        """Write ``dataset.json`` (the lists, classes and labels files must already be in ``root``)."""
        write_json_atomic(
            self.root / DATASET_FILE,
            {
                "name": self.name,
                "classes": "classes.txt",
                "image_dirs": [str(p) for p in self.image_dirs],
                "image_dirs_relative": [os.path.relpath(p, self.root) for p in self.image_dirs],
                "image_suffix": self.image_suffix,
                "mask_dirs": [str(p) for p in self.mask_dirs],
                "mask_dirs_relative": [os.path.relpath(p, self.root) for p in self.mask_dirs],
                "splits": {k: str(v.relative_to(self.root)) for k, v in self.splits.items()},
                "labels": str(self.labels_file.relative_to(self.root)),
            },
        )

    # -- queries ------------------------------------------------------------------------------------------
    def require_classes(self, classes, source) -> None:
        """A model trained on other classes than this dataset's is an error naming the model file."""
        if tuple(classes) != self.classes:
            raise DataError(
                f"{source}: trained on classes {list(classes)}, dataset {self.root} has {list(self.classes)}"
            )

    def names(self, split: str) -> list[str]:
        if split not in self.splits:
            raise DataError(f"{self.root / DATASET_FILE}: unknown split {split!r}; known: {sorted(self.splits)}")
        return read_list(self.splits[split])

    @functools.cached_property
    def labels(self) -> dict[str, np.ndarray]:
        """``{name: (C,) float32 multi-hot}`` for every labelled image."""
        return read_labels(self.labels_file, self.num_classes)

    def label(self, name: str) -> np.ndarray:
        try:
            return self.labels[name]
        except KeyError:
            raise DataError(f"{self.labels_file}: no image-level labels for listed image {name!r}") from None

    def image_path(self, name: str) -> Path:
        for d in self.image_dirs:
            p = d / f"{name}{self.image_suffix}"
            if p.is_file():
                return p
        raise DataError(f"image {name}{self.image_suffix} not found in {', '.join(str(d) for d in self.image_dirs)}")

    def mask_path(self, name: str) -> Path:
        for d in self.mask_dirs:
            p = d / f"{name}.png"
            if p.is_file():
                return p
        raise DataError(f"mask {name}.png not found in {', '.join(str(d) for d in self.mask_dirs)}")

    def read_image(self, name: str) -> np.ndarray:
        return read_image(self.image_path(name))

    @functools.cached_property
    def sizes(self) -> dict[str, tuple[int, int]]:
        """``{name: (H, W)}`` recorded at preparation (empty for a folder prepared without them)."""
        path = self.root / SIZES_FILE
        if not path.is_file():
            return {}
        sizes = {}
        for line in path.read_text().splitlines():
            name, _, hw = line.partition("\t")
            h, w = hw.split()
            sizes[name] = (int(h), int(w))
        return sizes

    def image_size(self, name: str) -> tuple[int, int]:
        """``(H, W)`` of an image: as recorded at preparation, else from its header (a clear error if unreadable)."""
        if name in self.sizes:
            return self.sizes[name]
        path = self.image_path(name)
        try:
            with Image.open(path) as img:
                return img.height, img.width
        except OSError as exc:
            raise DataError(f"{path}: unreadable image ({exc})") from exc

    def read_mask(self, name: str) -> np.ndarray:
        return read_mask(self.mask_path(name), self.num_classes)


def _resolve(root: Path, p: str) -> Path:
    p = Path(p)
    return p if p.is_absolute() else root / p


def _find_dirs(desc_path: Path, kind: str, stored: list[str], relative: list[str] | None) -> tuple[Path, ...]:
    """The image (or mask) folders of a dataset description: as stored, else relative to the prepared folder
    (the project, or the data beside it, was moved or mounted elsewhere); neither is a clear error."""
    found = []
    for i, p in enumerate(stored):
        candidates = [_resolve(desc_path.parent, p)]
        if relative is not None and i < len(relative):
            candidates.append(desc_path.parent / relative[i])
        hit = next((c for c in candidates if c.is_dir()), None)
        if hit is None:
            raise DataError(f"{desc_path}: {kind} folder {p} not found (nor {candidates[-1]}); the data was moved? "
                            f"prepare the dataset again")  # fmt: skip
        found.append(hit)
    return tuple(found)


def write_prepared(
    out: Path,
    name: str,
    classes: list[str],
    image_dirs: list[Path],
    image_suffix: str,
    mask_dirs: list[Path],
    splits: dict[str, list[str]],
    labels: dict[str, list[int]],
    sizes: dict[str, tuple[int, int]] | None = None,
) -> DatasetIndex:
    """Write a prepared dataset folder (classes, lists, labels, image sizes, then ``dataset.json`` last)."""
    out = Path(out)
    write_classes(out / "classes.txt", classes)
    if sizes is not None:
        write_text_atomic(out / SIZES_FILE, "".join(f"{n}\t{h} {w}\n" for n, (h, w) in sizes.items()))
    split_files = {}
    for split, names in splits.items():
        split_files[split] = out / "lists" / f"{split}.txt"
        write_list(split_files[split], names)
    write_labels(out / "image_labels.tsv", labels)
    index = DatasetIndex(
        root=out,
        name=name,
        classes=tuple(classes),
        image_dirs=tuple(Path(p).resolve() for p in image_dirs),
        image_suffix=image_suffix,
        mask_dirs=tuple(Path(p).resolve() for p in mask_dirs),
        splits=split_files,
        labels_file=out / "image_labels.tsv",
    )
    index.save()
    return index
