"""The second synthetic benchmark ("creatures"), designed apart from the first (``rpc.data.synthetic``) so that a
claim is not an accident of one design: other shapes and part structure, non-square images, textured
backgrounds, other colours and cues.

Why a second one: one generator, built together with its pretraining corpus, can flatter or punish a method by
accident (on a VOC-format folder of other people's design the orderings of CAM, SIPE and RPC changed). A claim
about the method counts as supported only where both benchmarks agree.

Design (per image; ``size`` is the typical side, each image takes one of :data:`ASPECTS`, e.g. 112 x 160):

- Background: textured. A base colour of low saturation, value noise at three scales (4, 8 and 16 px cells,
  bilinearly smoothed), pixel noise, and 2-4 flat distractor discs or boxes of any low-saturation colour.
- Objects ("creatures"), 1..``max_objects`` of distinct classes, each an elongated body (a capsule: a rotated
  rectangle with round ends, 38-55 % of the short side long) with two or four thin limbs sticking out of its
  sides and a head at one end of its axis:

  * the *discriminative part* is the head (a disc, about 12 % of the creature): a high-contrast, nearly
    achromatic grating whose orientation and period depend on the class (:func:`head_pattern`). A classifier can
    name the class from the head alone;
  * the *sub-discriminative part* is the body and the limbs: smooth (little noise) with a faint tint of a
    class-specific hue (:data:`BODY_HUES`, saturation about 0.15). Class-specific, but only by a weak colour
    shift that lies inside the range of the background's colours.

- Compared with the first benchmark: objects are capsules with limbs, not ellipses; the discriminative part sits
  at an end, not inside; it is a pattern (gratings, grey), not a saturated colour; the class cue of the rest is a
  tint alone, without stripes, at other hues (30 + 72 c degrees, not 60 c); the background is textured, not a
  smooth field; images are not square; 5 classes, not 6.
- Disjoint from the pretraining corpus (``rpc.data.corpus``) by construction, as the first benchmark is: no corpus
  texture is a single-orientation grating, and every corpus object has saturation >= 0.35 while the bodies here
  stay near 0.15 (tested).

Outputs: the same VOC layout as the first benchmark (``rpc.data.synthetic.generate_dataset``), with
``SegmentationPart/`` (0 background, 1 body and limbs, 2 head). Every image depends only on ``(seed, index)``.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import numpy as np

from rpc.data.synthetic import PART_DISC, PART_SUB

CLASSES = ("heron", "newt", "moth", "crab", "eel")
ASPECTS = ((112, 160), (160, 112), (128, 144), (144, 128), (128, 128))  # (height, width) at size 128
BODY_HUES = tuple(30.0 + 72.0 * c for c in range(len(CLASSES)))  # degrees
BODY_SATURATION = 0.15
BODY_NOISE = 5.0
HEAD_CONTRAST = 85.0  # grating amplitude around mid-grey
BG_NOISE = 14.0


@dataclass(frozen=True)
class CreaturesSpec:
    """What to generate; the fields mean what they mean in ``rpc.data.synthetic.SyntheticSpec`` (``size``: the
    typical image side; each image's height and width come from :data:`ASPECTS` scaled by ``size / 128``)."""

    classes: tuple[str, ...] = CLASSES
    size: int = 128
    n_train: int = 640
    n_train_eval: int = 160
    n_val: int = 96
    max_objects: int = 2
    seed: int = 0
    extra: dict = field(default_factory=dict)


def head_pattern(c: int, num_fg: int, h: int, w: int) -> np.ndarray:
    """Class ``c``'s head texture: a sinusoidal grating ``(h, w)`` in ``[-1, 1]``, orientation ``180 c / C``
    degrees and period 6, 7 or 8 px by class."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = math.pi * c / num_fg
    period = 6.0 + (c % 3)
    return np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period)


def body_colour(c: int, value: float = 0.55) -> np.ndarray:
    """The body's tinted colour (RGB 0..255) for class ``c``: hue :data:`BODY_HUES`, low saturation."""
    return np.array(colorsys.hsv_to_rgb(BODY_HUES[c % len(BODY_HUES)] / 360.0, BODY_SATURATION, value)) * 255.0


def _value_noise(rng, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth random field ``(h, w, 3)`` in about ``[-1, 1]``: random values on a grid of ``cell`` px,
    bilinearly interpolated."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.uniform(-1, 1, size=(gh, gw, 3))
    ys, xs = np.arange(h) / cell, np.arange(w) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _capsule(yy, xx, cy, cx, length, radius, theta):
    """Points within ``radius`` of the segment of ``length`` centred at ``(cy, cx)`` along angle ``theta``."""
    u = (xx - cx) * math.cos(theta) + (yy - cy) * math.sin(theta)
    v = -(xx - cx) * math.sin(theta) + (yy - cy) * math.cos(theta)
    du = np.clip(np.abs(u) - length / 2, 0, None)
    return du**2 + v**2 <= radius**2


def _rotated_box(yy, xx, cy, cx, half_u, half_v, theta):
    u = (xx - cx) * math.cos(theta) + (yy - cy) * math.sin(theta)
    v = -(xx - cx) * math.sin(theta) + (yy - cy) * math.cos(theta)
    return (np.abs(u) <= half_u) & (np.abs(v) <= half_v)


def image_shape(spec: CreaturesSpec, rng) -> tuple[int, int]:
    h, w = ASPECTS[int(rng.integers(len(ASPECTS)))]
    scale = spec.size / 128
    return max(32, round(h * scale / 8) * 8), max(32, round(w * scale / 8) * 8)


def _background(rng, h: int, w: int, yy, xx) -> np.ndarray:
    base = np.array(colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.0, 0.3), rng.uniform(0.4, 0.65))) * 255.0
    img = np.broadcast_to(base, (h, w, 3)).astype(np.float32)
    for cell, amplitude in ((4, 14.0), (8, 18.0), (16, 24.0)):
        img = img + amplitude * _value_noise(rng, h, w, cell).astype(np.float32)
    for _ in range(int(rng.integers(2, 5))):  # distractors: flat discs or boxes of any low-saturation colour
        colour = np.array(colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.0, 0.3), rng.uniform(0.3, 0.8)))
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.06, 0.14) * min(h, w)
        if rng.uniform() < 0.5:
            shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            shape = _rotated_box(yy, xx, cy, cx, r, r * rng.uniform(0.4, 1.0), rng.uniform(0, math.pi))
        img = np.where(shape[..., None], colour * 255.0, img)
    return img + rng.normal(0, BG_NOISE, size=img.shape)


def generate_image(spec: CreaturesSpec, index: int):
    """One sample: ``(image (H,W,3) uint8, mask (H,W) uint8 in 0..C, parts (H,W) uint8, objects)``, as
    ``rpc.data.synthetic.generate_image`` (``objects``: ``(class id, (xmin, ymin, xmax, ymax))``)."""
    rng = np.random.default_rng([spec.seed, index, 2])
    h, w = image_shape(spec, rng)
    num_fg = len(spec.classes)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = _background(rng, h, w, yy, xx)
    mask = np.zeros((h, w), np.uint8)
    parts = np.zeros((h, w), np.uint8)
    short = min(h, w)
    objects = []
    for c in rng.choice(num_fg, size=int(rng.integers(1, spec.max_objects + 1)), replace=False):
        c = int(c)
        length, radius = rng.uniform(0.38, 0.55) * short, rng.uniform(0.09, 0.12) * short
        theta = rng.uniform(0, 2 * math.pi)
        cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
        body = _capsule(yy, xx, cy, cx, length, radius, theta)
        for k in range(2 if rng.uniform() < 0.5 else 4):  # limbs across the body, near its ends
            along = (-0.25 if k % 2 == 0 else 0.25) * length if k < 2 else (0.05 if k == 2 else -0.05) * length
            ly, lx = cy + along * math.sin(theta), cx + along * math.cos(theta)
            body |= _rotated_box(yy, xx, ly, lx, 0.03 * short, radius + 0.12 * short, theta)
        hy, hx = cy + (length / 2) * math.sin(theta), cx + (length / 2) * math.cos(theta)
        head_r = radius * 0.9
        head = (yy - hy) ** 2 + (xx - hx) ** 2 <= head_r**2
        creature = body | head
        body_rgb = body_colour(c, rng.uniform(0.45, 0.65)) + rng.normal(0, BODY_NOISE, size=(h, w, 3))
        head_rgb = 128.0 + HEAD_CONTRAST * head_pattern(c, num_fg, h, w)[..., None] + rng.normal(0, 4.0, (h, w, 3))
        img = np.where(creature[..., None], body_rgb, img)
        img = np.where(head[..., None], head_rgb, img)
        mask[creature] = c + 1
        parts[creature] = PART_SUB
        parts[head] = PART_DISC
        objects.append(c + 1)
    boxes = []
    for cls in objects:
        ys, xs = np.nonzero(mask == cls)
        if len(ys):
            boxes.append((cls, (int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1)))
    return np.clip(img, 0, 255).astype(np.uint8), mask, parts, boxes
