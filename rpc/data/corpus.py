"""A synthetic classification corpus for pretraining backbones offline: the stand-in for ImageNet.

The paper's protocol is "ImageNet-pretrained backbone, then weakly supervised training". Nothing can be
downloaded where the embedded default runs, so the workflow pretrains its backbone with full supervision on this
corpus first (``rpc.engine.pretrain``). Like ImageNet for PASCAL VOC, the corpus teaches generic features
(shape, texture, colour, object against clutter) and none of the benchmark's classes.

Classes: ``SHAPES x TEXTURES x COLOUR_FAMILIES`` = 8 x 4 x 2 = 64 classes, one object per image on a cluttered
background. A class is a combination, so no single cue (colour, shape or texture alone) names it.

- shapes: triangle, square, pentagon, hexagon, star, cross, ring, crescent (random size, rotation, position);
- textures inside the object: flat, checkerboard, dots, grain;
- colour families: two sets of hue windows (A: around 30/150/270 degrees, B: around 90/210/330 degrees),
  saturation 0.35-0.85, value 0.45-0.9; the hue is drawn per image within the family's windows.
- background: a smooth two-colour gradient of any hue at low saturation, pixel noise, and two flat distractor
  rectangles of any colour.

Disjointness from the synthetic benchmark (``rpc.data.synthetic``): no corpus *class* shares an appearance with
a benchmark class, by construction of the parameter space (tested on rendered images in ``tests/test_corpus.py``).
It concerns the objects, which define the classes; the clutter is class-independent and unrestricted (background
gradients of any hue at saturation <= 0.3, distractor rectangles of any colour), as ImageNet's backgrounds also hold
every colour. The reference hues are those of the benchmark's *default* classes (``DEFAULT_CLASSES``); a benchmark
generated with another class count has other hues, which this corpus does not avoid.

- colour: the benchmark's class colours are the hues ``c / C`` of its default classes (0, 60, ..., 300 degrees)
  at full saturation (discriminative parts) or as a tint (sub-discriminative parts). Every object hue here stays
  at least ``HUE_MARGIN`` = 15 degrees away from each of those hues, and saturation never exceeds 0.85;
- pattern: the benchmark's sub-discriminative parts carry sinusoidal stripes (a single-orientation grating).
  No texture here is a grating: flat, checkerboard (two orientations), dots (isotropic), grain (isotropic);
- shape: the benchmark's objects are filled ellipses; none of the shapes here is.

The corpus was fixed before any benchmark score was seen and is not tuned on them; its only knobs (size, images
per class, seed) are for speed. Every image depends only on ``(seed, index)``.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from rpc.data.synthetic import DEFAULT_CLASSES

SHAPES = ("triangle", "square", "pentagon", "hexagon", "star", "cross", "ring", "crescent")
TEXTURES = ("flat", "checker", "dots", "grain")
HUE_MARGIN = 15.0  # degrees kept clear around each benchmark class hue
MAX_SATURATION = 0.85
MIN_SATURATION = 0.35  # of every object (the second benchmark's bodies stay far below: rpc.data.creatures)
# the benchmark's class hues (degrees): hue c / C for its default C classes (rpc.data.synthetic.class_colours)
BENCHMARK_HUES = tuple(360.0 * c / len(DEFAULT_CLASSES) for c in range(len(DEFAULT_CLASSES)))
# two families of hue windows (degrees), each window centred between two benchmark hues
COLOUR_FAMILIES = (
    ((15.0, 45.0), (135.0, 165.0), (255.0, 285.0)),
    ((75.0, 105.0), (195.0, 225.0), (315.0, 345.0)),
)
NUM_CLASSES = len(SHAPES) * len(TEXTURES) * len(COLOUR_FAMILIES)


@dataclass(frozen=True)
class CorpusSpec:
    """``images_per_class`` x ``NUM_CLASSES`` training images of ``size`` px (and ``val_per_class`` held out)."""

    size: int = 64
    images_per_class: int = 100
    val_per_class: int = 10
    seed: int = 0


def class_attributes(label: int) -> tuple[str, str, int]:
    """``label`` in ``0..NUM_CLASSES-1`` -> ``(shape, texture, colour family index)``."""
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"corpus label must be in 0..{NUM_CLASSES - 1}, got {label}")
    family, rest = divmod(label, len(SHAPES) * len(TEXTURES))
    shape, texture = divmod(rest, len(TEXTURES))
    return SHAPES[shape], TEXTURES[texture], family


def hue_distance(a: float, b: float) -> float:
    """Distance of two hues in degrees on the colour circle (0..180)."""
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


def _polygon(shape: str, cx: float, cy: float, r: float, theta: float) -> list[tuple[float, float]]:
    if shape == "star":
        pts = [(r if k % 2 == 0 else 0.45 * r, math.pi * k / 5) for k in range(10)]
    elif shape == "cross":
        w = 0.33
        corners = [(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1), (-w, -1), (-w, -w), (-1, -w), (-1, w),
                   (-w, w), (-w, 1)]  # fmt: skip
        pts = [(r * math.hypot(x, y), math.atan2(y, x)) for x, y in corners]
    else:
        n = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}[shape]
        pts = [(r, 2 * math.pi * k / n) for k in range(n)]
    return [(cx + d * math.cos(a + theta), cy + d * math.sin(a + theta)) for d, a in pts]


def shape_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean ``(size, size)`` object mask: random radius 22-38 % of the side, rotation and position."""
    r = rng.uniform(0.22, 0.38) * size
    cx, cy = rng.uniform(r * 0.8, size - r * 0.8, size=2)
    theta = rng.uniform(0, 2 * math.pi)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        ri = r * rng.uniform(0.45, 0.6)
        draw.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=0)
    elif shape == "crescent":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        off = r * 0.55
        ox, oy = cx + off * math.cos(theta), cy + off * math.sin(theta)
        draw.ellipse([ox - r * 0.9, oy - r * 0.9, ox + r * 0.9, oy + r * 0.9], fill=0)
    else:
        draw.polygon(_polygon(shape, cx, cy, r, theta), fill=255)
    return np.asarray(canvas) > 127


def _texture(texture: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(size, size)`` float pattern in about ``[-1, 1]`` (0 for flat)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if texture == "flat":
        return np.zeros((size, size), np.float32)
    if texture == "checker":
        period, theta = rng.uniform(5, 10), rng.uniform(0, math.pi / 2)
        u = xx * math.cos(theta) + yy * math.sin(theta)
        v = -xx * math.sin(theta) + yy * math.cos(theta)
        return np.where((np.floor(u / period) + np.floor(v / period)) % 2 == 0, 1.0, -1.0).astype(np.float32)
    if texture == "dots":
        period = rng.uniform(5, 9)
        oy, ox = rng.uniform(0, period, size=2)
        dy = (yy + oy) % period - period / 2
        dx = (xx + ox) % period - period / 2
        return np.where(dy**2 + dx**2 <= (0.28 * period) ** 2, 1.0, -0.3).astype(np.float32)
    if texture == "grain":
        return np.clip(rng.normal(0, 0.8, size=(size, size)), -1.5, 1.5).astype(np.float32)
    raise ValueError(f"unknown texture {texture!r}")


def object_hue(family: int, rng: np.random.Generator) -> float:
    """A hue (degrees) inside one of the family's windows."""
    lo, hi = COLOUR_FAMILIES[family][int(rng.integers(len(COLOUR_FAMILIES[family])))]
    return float(rng.uniform(lo, hi))


def _rgb(hue_deg: float, sat: float, val: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue_deg / 360.0, sat, val), np.float32) * 255.0


def render(label: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """One corpus image of class ``label``: ``(image (size, size, 3) uint8, object mask (size, size) bool,
    object hue in degrees)``."""
    shape, texture, family = class_attributes(label)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    # background: a smooth low-saturation gradient, pixel noise, two flat distractor rectangles
    c0 = _rgb(rng.uniform(0, 360), rng.uniform(0, 0.3), rng.uniform(0.3, 0.8))
    c1 = _rgb(rng.uniform(0, 360), rng.uniform(0, 0.3), rng.uniform(0.3, 0.8))
    angle = rng.uniform(0, 2 * math.pi)
    t = np.clip(0.5 + (xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle), 0, 1)[..., None]
    img = c0 * (1 - t) + c1 * t
    for _ in range(2):
        h, w = rng.uniform(0.1, 0.3, size=2) * size
        y0, x0 = rng.uniform(0, size - h), rng.uniform(0, size - w)
        img[int(y0) : int(y0 + h), int(x0) : int(x0 + w)] = _rgb(rng.uniform(0, 360), rng.uniform(0, 1),
                                                                 rng.uniform(0.2, 1))  # fmt: skip
    img = img + rng.normal(0, rng.uniform(4, 16), size=img.shape)
    # the object
    mask = shape_mask(shape, size, rng)
    hue = object_hue(family, rng)
    base = _rgb(hue, rng.uniform(MIN_SATURATION, MAX_SATURATION), rng.uniform(0.45, 0.9))
    pattern = _texture(texture, size, rng)[..., None]
    obj = base * (1.0 + 0.3 * pattern) + rng.normal(0, 4, size=img.shape)
    img = np.where(mask[..., None], obj, img)
    return np.clip(img, 0, 255).astype(np.uint8), mask, hue


def corpus_labels(spec: CorpusSpec, split: str) -> np.ndarray:
    """Labels of the ``train`` or ``val`` split: each class equally often, in a fixed interleaved order."""
    per_class = {"train": spec.images_per_class, "val": spec.val_per_class}[split]
    return np.tile(np.arange(NUM_CLASSES), per_class)


def generate_corpus(spec: CorpusSpec, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The whole split in memory: ``(images (N, size, size, 3) uint8, labels (N,) int64)``. Image ``i`` of a
    split depends only on ``(seed, split, i)``."""
    labels = corpus_labels(spec, split)
    images = np.empty((len(labels), spec.size, spec.size, 3), np.uint8)
    stream = {"train": 0, "val": 1}[split]
    for i, label in enumerate(labels):
        images[i] = render(int(label), spec.size, np.random.default_rng([spec.seed, stream, i]))[0]
    return images, labels.astype(np.int64)
