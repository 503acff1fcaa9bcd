"""Streaming confusion matrix, per-class IoU and mIoU (memory independent of the number of images), optionally
with each image's per-class counts for a bootstrap over images (``rpc.evaluation.uncertainty``)."""

from __future__ import annotations

import numpy as np

from rpc.data.palette import IGNORE_INDEX


class ConfusionMatrix:
    """Accumulates a ``(K, K)`` int64 matrix, rows = ground truth, columns = prediction.

    Ground-truth pixels equal to ``ignore_index`` are skipped. Predictions must lie in ``0..K-1`` (map any
    "uncertain" value to a class before calling ``update``).

    With ``per_image=True`` every ``update`` (one image) also keeps that image's per-class true positives,
    ground-truth and predicted pixel counts (``per_image_counts()``: three ``(N, K)`` arrays, 12 K bytes per
    image), what a bootstrap over images resamples.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, per_image: bool = False):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        self._per_image: list[np.ndarray] | None = [] if per_image else None

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
        keep = gt != self.ignore_index
        p, g = pred[keep].astype(np.int64), gt[keep].astype(np.int64)
        k = self.num_classes
        if p.size and (p.min() < 0 or p.max() >= k):
            raise ValueError(f"prediction values outside 0..{k - 1}: {sorted(set(np.unique(p)) - set(range(k)))}")
        if g.size and g.max() >= k:
            raise ValueError(f"ground-truth values outside 0..{k - 1} and {self.ignore_index}")
        image = np.bincount(g * k + p, minlength=k * k).reshape(k, k)
        self.matrix += image
        if self._per_image is not None:
            self._per_image.append(np.stack([np.diag(image), image.sum(1), image.sum(0)]).astype(np.int32))

    def per_image_counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(tp, gt, pred)``, each ``(N, K)`` int64: per image and class, the true positives, the ground-truth
        pixels and the predicted pixels (only with ``per_image=True``)."""
        if self._per_image is None:
            raise ValueError("per-image counts were not kept: ConfusionMatrix(..., per_image=True)")
        stacked = np.stack(self._per_image).astype(np.int64) if self._per_image else np.zeros((0, 3, self.num_classes))
        return stacked[:, 0], stacked[:, 1], stacked[:, 2]

    def merge(self, other: ConfusionMatrix) -> None:
        """Add ``other``'s counts; its images' per-image counts (where both keep them) follow this one's, so
        merging the matrices of consecutive pieces of a list in order equals one matrix over the whole list."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix into a {self.num_classes}-class one")
        self.matrix += other.matrix
        if self._per_image is not None:
            if other._per_image is None:
                raise ValueError("cannot merge a matrix without per-image counts into one that keeps them")
            self._per_image.extend(other._per_image)

    def iou(self) -> np.ndarray:
        """``(K,)`` float64 IoU per class; NaN for a class absent from both GT and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def miou(self) -> float:
        return float(np.nanmean(self.iou()))

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def summary(self, class_names: list[str] | tuple[str, ...]) -> dict:
        """JSON-ready dict: mIoU, pixel accuracy and per-class IoU (None where undefined)."""
        iou = self.iou()
        return {
            "miou": self.miou(),
            "pixel_accuracy": self.pixel_accuracy(),
            "per_class_iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(class_names, iou, strict=False)},
            "pixels": int(self.matrix.sum()),
        }


def markdown_table(summary: dict, title: str = "") -> str:
    """A Markdown table (IoU in %) of a ``ConfusionMatrix.summary``."""
    lines = [f"### {title}\n"] if title else []
    lines += ["| class | IoU (%) |", "|---|---:|"]
    for name, v in summary["per_class_iou"].items():
        lines.append(f"| {name} | {'n/a' if v is None else f'{100 * v:.1f}'} |")
    lines.append(f"| **mIoU** | **{100 * summary['miou']:.1f}** |")
    return "\n".join(lines) + "\n"
