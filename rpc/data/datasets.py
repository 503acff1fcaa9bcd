"""PyTorch datasets over a prepared ``DatasetIndex``: classifier training and multi-scale inference."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from rpc.data.index import DatasetIndex
from rpc.data.transforms import multiscale_flip, train_transform


class ClassificationTrainSet(Dataset):
    """Images with image-level labels, augmented as in docs/method.md "Training".

    Item: ``{"image": (3, crop, crop) float32, "valid": (crop, crop) float32, "label": (C,) float32,
    "index": int}``. Augmentation randomness comes from ``(seed, epoch, index)`` so a run is reproducible and a
    resumed run sees the same crops as an uninterrupted one; call ``set_epoch`` each epoch.
    """

    def __init__(self, index: DatasetIndex, split: str, long_side=(320, 640), crop=512, seed=0):
        self.index, self.names = index, index.names(split)
        for name in self.names:  # fail early, naming the list, if labels are missing
            index.label(name)
        self.long_side, self.crop, self.seed, self.epoch = tuple(long_side), crop, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        name = self.names[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        image, valid = train_transform(self.index.read_image(name), rng, self.long_side, self.crop)
        return {
            "image": torch.from_numpy(image),
            "valid": torch.from_numpy(valid),
            "label": torch.from_numpy(self.index.label(name)),
            "index": i,
        }


class MultiScaleInferenceSet(Dataset):
    """Images for map inference at several scales, each with its flip.

    Item: ``{"name": str, "size": (H, W), "label": (C,) float32, "scales": [ (2, 3, h_s, w_s) float32 ]}``; with
    ``decoded_only`` the pyramid is left to the device (``rpc.data.pyramid``) and the item holds ``"image": (H, W,
    3) uint8`` instead of ``"scales"``. Use ``batch_size=None`` (items differ in size).
    """

    def __init__(self, index: DatasetIndex, names: list[str], scales=(1.0, 0.5, 1.5, 2.0), decoded_only=False):
        self.index, self.names, self.scales = index, list(names), tuple(scales)
        self.decoded_only = decoded_only
        for name in self.names:
            index.label(name)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        name = self.names[i]
        image = self.index.read_image(name)
        item = {"name": name, "size": image.shape[:2], "label": torch.from_numpy(self.index.label(name))}
        if self.decoded_only:
            item["image"] = torch.from_numpy(np.array(image))  # a writable copy of the decoded pixels
        else:
            item["scales"] = [torch.from_numpy(x) for x in multiscale_flip(image, self.scales)]
        return item
