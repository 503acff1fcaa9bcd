"""The scale pyramid of map inference built on the model's device (docs/method.md, "Localisation maps").

The host path (``rpc.data.transforms.multiscale_flip``, in the loaders) resizes with PIL and ships a float32 array
per scale and flip: on a GPU that is 2 x (1 + 0.25 + 2.25 + 4) = 15 image-sized float32 copies per image across
the bus. Here the loaders only decode; the uint8 image goes to the device once (pinned memory) and the resizes,
normalisation and flips run there, with the same result as the host path, value for value.

The resize is PIL's ``Image.resize(size, BICUBIC)`` for 8-bit images, re-done as matrix products: per side a
``(new, old)`` matrix of PIL's fixed-point coefficients (Pillow's ``Resample.c``: the bicubic kernel with
a = -0.5, widened by the scale when shrinking, normalised per output pixel, times 2^22 and truncated), one side
after the other in Pillow's order, each pass rounded and clipped to 0..255 as PIL's uint8 intermediate is. The
products are exact in float64 (integers below 2^53), so the pixels equal PIL's. A plain float resize
(``F.interpolate`` with ``antialias=True``) is not: measured on VOC images, 15-22 % of the pixels differ, by up to
14 grey levels at sharp edges, where PIL clips the first pass's overshoot.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import PIL
import torch
from PIL import Image

from rpc.data.transforms import IMAGENET_MEAN, IMAGENET_STD, scaled_size

PRECISION_BITS = 22  # Pillow's 8-bit resampling: 32 - 8 - 2


def _bicubic(x: np.ndarray) -> np.ndarray:
    """Pillow's bicubic kernel (a = -0.5), float64."""
    a, x = -0.5, np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@functools.lru_cache(maxsize=64)
def pil_coefficients(in_size: int, out_size: int) -> np.ndarray:
    """``(out_size, in_size)`` float64 matrix of Pillow's integer resampling coefficients for one side (each row
    sums to about 2^22), computed in Pillow's order of operations so that every coefficient is the same integer."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    ksize = int(np.ceil(support)) * 2 + 1
    centers = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum(np.trunc(centers - support + 0.5), 0).astype(np.int64)
    xmax = np.minimum(np.trunc(centers + support + 0.5), in_size).astype(np.int64) - xmin
    taps = np.arange(ksize)
    valid = taps[None, :] < xmax[:, None]
    w = np.where(valid, _bicubic((taps[None, :] + xmin[:, None] - centers[:, None] + 0.5) * (1.0 / filterscale)), 0)
    total = np.zeros(out_size)
    for t in range(ksize):  # summed tap by tap as Pillow does (numpy's pairwise sum may differ in the last bit)
        total = total + w[:, t]
    w = np.where(total[:, None] != 0.0, w / np.where(total == 0.0, 1.0, total)[:, None], w)
    scaled = w * (1 << PRECISION_BITS)
    fixed = np.where(w < 0, np.trunc(-0.5 + scaled), np.trunc(0.5 + scaled))
    matrix = np.zeros((out_size, in_size))
    rows, cols = np.nonzero(valid)
    matrix[rows, xmin[rows] + cols] = fixed[rows, cols]
    return matrix


def _resize_pass(x: torch.Tensor, coefficients: np.ndarray, dim: int) -> torch.Tensor:
    """One side of the resize on float64 pixels 0..255: the fixed-point sums, rounded and clipped as a uint8."""
    k = torch.from_numpy(coefficients).to(x.device)
    s = x @ k.T if dim == -1 else k @ x
    return torch.floor((s + (1 << (PRECISION_BITS - 1))) / (1 << PRECISION_BITS)).clamp_(0, 255)


def _passes(x: torch.Tensor, size: tuple[int, int], vertical_first: bool) -> torch.Tensor:
    h, w = x.shape[-2:]
    passes = [(w, size[1], -1), (h, size[0], -2)]
    for old, new, dim in reversed(passes) if vertical_first else passes:
        if old != new:
            x = _resize_pass(x, pil_coefficients(old, new), dim)
    return x


@functools.cache
def _pillow_can_start_with_the_height() -> bool:
    """Pillow 13 runs the vertical pass first where the height shrinks by more than twice what the width does;
    older versions always start with the width. Which one is installed, from a probe image resized both ways."""
    probe = (np.arange(16 * 16 * 3).reshape(16, 16, 3) * 37 % 256).astype(np.uint8)  # sharp edges everywhere
    expected = np.asarray(Image.fromarray(probe).resize((32, 4), Image.BICUBIC))
    x = torch.from_numpy(probe).permute(2, 0, 1)[None].double()
    for vertical_first in (True, False):
        if np.array_equal(_passes(x, (4, 32), vertical_first)[0].permute(1, 2, 0).numpy(), expected):
            return vertical_first
    raise RuntimeError(f"Pillow {PIL.__version__}: its bicubic resize is neither known pass order")


def pil_bicubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """float64 ``(B, 3, H, W)`` of 0..255 integers -> ``(B, 3, h, w)``: PIL's ``resize((w, h), BICUBIC)`` of the
    uint8 image, pixel for pixel (a side that keeps its length is not touched; the passes in Pillow's order)."""
    h, w = x.shape[-2:]
    shrink_h, shrink_w = h - size[0], w - size[1]
    vertical_first = shrink_h > 0 and shrink_h > 2 * shrink_w and _pillow_can_start_with_the_height()
    return _passes(x, size, vertical_first)


def device_pyramid(images: torch.Tensor, scales: tuple[float, ...]) -> Iterator[torch.Tensor]:
    """uint8 ``(B, H, W, 3)`` RGB images of one size (on any device) -> per scale, in ``scales`` order, a float32
    ``(2B, 3, h_s, w_s)`` batch on the same device: each image normalised (ImageNet mean/std) and followed by its
    horizontal flip, the order of the host path's items concatenated. Lazy, so one scale is in memory at a time."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 (B, H, W, 3) images, got {images.dtype} {tuple(images.shape)}")
    h, w = images.shape[1:3]
    x = images.permute(0, 3, 1, 2).double()  # (B, 3, H, W), values 0..255
    mean = torch.as_tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    for s in scales:
        r = (pil_bicubic(x, scaled_size(h, w, s)).float() - mean) / std
        yield torch.stack([r, r.flip(-1)], 1).flatten(0, 1)
