"""``PreparedSegDataset``: an mmseg dataset over a prepared dataset (``rpc.data.index``) and a mask folder.

Images come from the prepared dataset (VOC, COCO or synthetic, whatever folders it lists); labels come from
``mask_dir/<name>.png`` (pseudo masks) or, with ``mask_dir=None``, from the dataset's ground truth. Class names
and the palette come from the dataset. :func:`check_masks` validates a mask folder before training.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rpc.segmentation.compat import ensure_mmseg

ensure_mmseg()

from mmseg.datasets import BaseSegDataset  # noqa: E402
from mmseg.registry import DATASETS  # noqa: E402

from rpc.data.index import DatasetIndex, check_image_file  # noqa: E402
from rpc.data.palette import read_mask, voc_colormap  # noqa: E402
from rpc.utils.io import DataError  # noqa: E402


def check_masks(index: DatasetIndex, names: list[str], mask_dir: str | os.PathLike | None, threads: int = 4) -> None:
    """Before DeepLab trains: every listed image has a mask (``mask_dir/<name>.png``, or with ``mask_dir=None`` the
    dataset's ground truth) with values in 0..C or 255, palette or grayscale, and an image that every reader reads
    the same way (``rpc.data.index.check_image``: no EXIF rotation, 8 bits); otherwise a DataError naming the first
    bad file (mmseg's loader would fail later inside the loss, or train on a rotated image). Reads all masks and
    the images' headers (in threads): about 3 ms per VOC mask."""
    if mask_dir is None:
        paths = {n: index.mask_path(n) for n in names}  # a missing ground-truth mask: named here
    else:
        mask_dir = Path(mask_dir)
        if not mask_dir.is_dir():
            raise DataError(f"{mask_dir}: mask folder not found")
        paths = {n: mask_dir / f"{n}.png" for n in names}
        missing = [n for n, p in paths.items() if not p.is_file()]
        if missing:
            raise DataError(f"{mask_dir}: {len(missing)} mask(s) missing for the training list, e.g. {missing[0]}.png")

    def check(name):
        read_mask(paths[name], index.num_classes)
        check_image_file(index.image_path(name))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(check, names))


@DATASETS.register_module()
class PreparedSegDataset(BaseSegDataset):
    def __init__(self, dataset_dir: str, split: str, mask_dir: str | None = None, **kwargs):
        self.index = DatasetIndex.load(dataset_dir)
        self.split, self.mask_dir = split, mask_dir
        palette = voc_colormap(self.index.num_classes).tolist()
        kwargs.setdefault("metainfo", dict(classes=self.index.classes, palette=palette))
        super().__init__(img_suffix=self.index.image_suffix, seg_map_suffix=".png", **kwargs)

    def load_data_list(self) -> list[dict]:
        data = []
        for name in self.index.names(self.split):
            seg = Path(self.mask_dir) / f"{name}.png" if self.mask_dir else self.index.mask_path(name)
            data.append(dict(img_path=str(self.index.image_path(name)), seg_map_path=str(seg), label_map=None,
                             reduce_zero_label=False, seg_fields=[], name=name))  # fmt: skip
        return data


__all__ = ["PreparedSegDataset", "check_masks"]
