"""The two dense-CRF calls of docs/method.md, on pydensecrf (package ``pydensecrf2``).

- :func:`crf_from_labels`: unary from HARD labels (IRN ``crf_inference_label``), used for pseudo masks.
- :func:`crf_from_probs`: unary = -log(softmax scores), used to post-process segmentation predictions.

Both take the raw uint8 RGB image ``(H, W, 3)`` and run mean-field inference on a fully connected CRF with one
Gaussian (smoothness) and one bilateral (appearance) kernel. Unaries are built with numpy, vectorised.

The position kernels' widths (``gauss_sxy``, ``bilateral_sxy``) are in pixels, and the published values were set
for VOC photos, whose long side is 500 px. ``reference_size`` (config ``crf.reference_size``) scales them to the
image: on an image whose long side is shorter than ``reference_size`` both widths shrink in proportion to it,
``sxy * long_side / reference_size``; they never grow, so with 500 VOC (500 px) and COCO (640 px) images keep the
published values and a 128 px synthetic image gets about a quarter of them (bilateral 67 -> 17). Off by default
(``0``): measured on the synthetic benchmark, the scaled widths were worse for both CRFs (DeepLab predictions on the
tuning split 86.6 against 90.3 with the published widths; pseudo masks on selection-seed maps 75.0 against 82.0,
255 ignored; docs/benchmark.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pydensecrf.densecrf as dcrf


@dataclass(frozen=True)
class CRFParams:
    """Kernel parameters; defaults = the pseudo-mask CRF of docs/method.md (IRN/SIPE)."""

    gauss_sxy: float = 3.0
    gauss_compat: float = 3.0
    bilateral_sxy: float = 50.0
    bilateral_srgb: float = 5.0
    bilateral_compat: float = 10.0
    iterations: int = 10
    gt_prob: float = 0.7  # only for the hard-label unary
    reference_size: float = 0.0  # scale sxy to images shorter than this long side (module docstring); 0 = never


def for_image(p: CRFParams, shape: tuple[int, ...]) -> CRFParams:
    """``p`` with its position kernels scaled to an image of ``shape`` ``(H, W, ...)``: by ``min(1, long side /
    reference_size)`` (module docstring)."""
    if p.reference_size <= 0:
        return p
    scale = min(1.0, max(shape[:2]) / p.reference_size)
    return dataclasses.replace(p, gauss_sxy=p.gauss_sxy * scale, bilateral_sxy=p.bilateral_sxy * scale)


#: Pseudo-mask CRF (docs/method.md, IRN/SIPE); hard-label unary.
PSEUDO_MASK_CRF = CRFParams()
#: Post-processing of DeepLab predictions (docs/method.md, deeplab-pytorch settings); softmax unary.
SEGMENTATION_CRF = CRFParams(gauss_sxy=1, gauss_compat=3, bilateral_sxy=67, bilateral_srgb=3, bilateral_compat=4)


def parse_params(items: list[str], base: CRFParams) -> CRFParams:
    """``["bilateral_sxy=50", ...]`` -> ``base`` with those fields replaced (unknown keys are an error)."""
    fields = {f.name: f.type for f in dataclasses.fields(CRFParams)}
    changes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"CRF parameter {item!r}: expected KEY=VALUE with KEY in {sorted(fields)}")
        changes[key] = int(value) if key == "iterations" else float(value)
    return dataclasses.replace(base, **changes)


def _check_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"CRF needs a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if image.shape[:2] != tuple(shape):
        raise ValueError(f"image size {image.shape[:2]} differs from the map size {tuple(shape)}")
    return np.require(image, requirements=["C", "W"])  # pydensecrf needs a writable C-contiguous buffer


def _infer(image: np.ndarray, unary: np.ndarray, p: CRFParams) -> np.ndarray:
    """``unary (K, H, W)`` energies -> ``(K, H, W)`` float32 marginals after ``p.iterations`` steps."""
    k, h, w = unary.shape
    p = for_image(p, (h, w))
    d = dcrf.DenseCRF2D(w, h, k)
    d.setUnaryEnergy(np.ascontiguousarray(unary.reshape(k, -1), dtype=np.float32))
    d.addPairwiseGaussian(sxy=p.gauss_sxy, compat=p.gauss_compat)
    d.addPairwiseBilateral(sxy=p.bilateral_sxy, srgb=p.bilateral_srgb, rgbim=image, compat=p.bilateral_compat)
    return np.asarray(d.inference(p.iterations), dtype=np.float32).reshape(k, h, w)


def label_unary(labels: np.ndarray, n_labels: int, gt_prob: float) -> np.ndarray:
    """Hard labels ``(H, W)`` in 0..n_labels-1 -> energies ``(n_labels, H, W)``: -log(gt_prob) for the given
    label, -log((1 - gt_prob) / (n_labels - 1)) for every other one."""
    sure, other = -np.log(gt_prob), -np.log((1.0 - gt_prob) / (n_labels - 1))
    unary = np.full((n_labels, *labels.shape), other, np.float32)
    np.put_along_axis(unary, labels[None].astype(np.int64), sure, axis=0)
    return unary


def crf_from_labels(image: np.ndarray, labels: np.ndarray, n_labels: int, p: CRFParams = PSEUDO_MASK_CRF) -> np.ndarray:
    """Refine hard labels ``(H, W)`` (values 0..n_labels-1) on ``image``; returns ``(H, W)`` int64 labels."""
    image = _check_image(image, labels.shape)
    if n_labels < 2:
        return np.zeros(labels.shape, np.int64)
    return np.argmax(_infer(image, label_unary(labels, n_labels, p.gt_prob), p), axis=0)


def crf_from_probs(image: np.ndarray, probs: np.ndarray, p: CRFParams = SEGMENTATION_CRF) -> np.ndarray:
    """Refine class probabilities ``(K, H, W)`` (softmax output) on ``image``; returns ``(K, H, W)`` marginals."""
    image = _check_image(image, probs.shape[1:])
    return _infer(image, -np.log(np.clip(probs, 1e-8, 1.0)), p)
