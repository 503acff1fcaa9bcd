"""Image transforms for classifier training and multi-scale inference (docs/method.md, SIPE).

All functions work on numpy arrays ``(H, W, 3)`` uint8 / float32 and are deterministic given a
``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255.0
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255.0


def normalize(image: np.ndarray) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)`` -> float32 ``(H, W, 3)``, ImageNet mean/std."""
    return (image.astype(np.float32) - IMAGENET_MEAN) / IMAGENET_STD


def resize(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of a uint8 ``(H, W, 3)`` image to ``(h, w)``, as SIPE's ``pil_rescale(img, s, order=3)``
    (PIL's bicubic, clipped to uint8). Masks are never resized here (they use nearest where needed)."""
    h, w = size_hw
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))


def resize_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    return resize(image, (max(1, round(h * scale)), max(1, round(w * scale))))


def random_crop(image: np.ndarray, crop: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random ``crop x crop`` window; a smaller image is placed at a random offset in a zero canvas.

    Returns ``(crop, crop, 3)`` float32 and a ``(crop, crop)`` float32 validity mask (1 = real pixel).
    Padding value 0 applies after normalisation (i.e. the mean colour), as in SIPE.
    """
    h, w = image.shape[:2]
    ch, cw = min(crop, h), min(crop, w)
    y0 = int(rng.integers(0, h - ch + 1))  # window in the image
    x0 = int(rng.integers(0, w - cw + 1))
    oy = int(rng.integers(0, crop - ch + 1))  # placement in the canvas
    ox = int(rng.integers(0, crop - cw + 1))
    out = np.zeros((crop, crop, image.shape[2]), dtype=np.float32)
    valid = np.zeros((crop, crop), dtype=np.float32)
    out[oy : oy + ch, ox : ox + cw] = image[y0 : y0 + ch, x0 : x0 + cw]
    valid[oy : oy + ch, ox : ox + cw] = 1.0
    return out, valid


def train_transform(
    image: np.ndarray, rng: np.random.Generator, long_side: tuple[int, int], crop: int, flip: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The training augmentation (docs/method.md): resize long side to U[lo, hi], flip, normalise, random crop.

    Returns ``image (3, crop, crop) float32`` and ``valid (crop, crop) float32``.
    """
    lo, hi = long_side
    image = resize_long_side(image, int(rng.integers(lo, hi + 1)))
    if flip and rng.random() < 0.5:
        image = image[:, ::-1]
    out, valid = random_crop(normalize(image), crop, rng)
    return np.ascontiguousarray(out.transpose(2, 0, 1)), valid


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    return max(1, round(h * scale)), max(1, round(w * scale))


def multiscale_flip(image: np.ndarray, scales: tuple[float, ...]) -> list[np.ndarray]:
    """One ``(2, 3, h_s, w_s)`` float32 array per scale: the normalised image and its horizontal flip."""
    h, w = image.shape[:2]
    out = []
    for s in scales:
        x = normalize(resize(image, scaled_size(h, w, s))).transpose(2, 0, 1)
        out.append(np.ascontiguousarray(np.stack([x, x[:, :, ::-1]])))
    return out
