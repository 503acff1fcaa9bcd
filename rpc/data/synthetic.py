"""A deterministic synthetic dataset in VOC format that shows the paper's semantic gap.

Why: the embedded default must run the whole pipeline on CPU in minutes, with no download, and the numbers
must still mean something. So the data is built to carry the phenomenon RPC addresses (paper Sec. 1,
Fig. 1): inside one object there are two kinds of features.

Design (per image, ``size x size`` pixels):

- Background: a smooth random colour field (a per-image base colour in the mid-grey range plus a few large
  soft blobs) with strong per-pixel noise (std ``BG_NOISE``) -- a busy texture with no class information.
- Objects: 1..``max_objects`` ellipses of distinct classes, semi-axes 18-32 % of the image side, random
  rotation. Each object has two parts:

  * a *discriminative part* (a small ellipse inside the object, about 15 % of its area): a saturated,
    class-specific colour (hue ``c / C``, full saturation) with little noise. Strong and unique: a classifier
    trained on image labels can recognise every class from this part alone, so its CAM fires here first.
  * a *sub-discriminative part* (the rest of the object): a desaturated class-specific tint (grey plus
    ``BODY_TINT`` along the class hue) with faint class-specific stripes (angle and period depend on the
    class) and low noise. Class-specific, but weak: its colour lies inside the range of the background's base
    colours, so it takes the smoothness, tint and stripes together to tell it apart.

- Outputs (VOC layout): ``JPEGImages/*.jpg`` (quality 95), ``SegmentationClass/*.png`` (palette),
  ``Annotations/*.xml`` (object names and boxes), ``ImageSets/Segmentation/{train_aug,train,val}.txt``,
  ``classes.txt``, and ``SegmentationPart/*.png`` (0 background, 1 sub-discriminative, 2 discriminative) for
  analysing which part each stage activates.

Every image depends only on ``(seed, index)``, so a larger dataset extends a smaller one.
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from rpc.data.palette import write_mask
from rpc.utils.io import atomic_path, write_list, write_text_atomic
from rpc.utils.workdir import claim_output_dir

DEFAULT_CLASSES = ("crimson", "amber", "lime", "teal", "azure", "violet")
BG_NOISE = 24.0
BODY_NOISE = 6.0
BODY_TINT = 30.0
STRIPE_AMPLITUDE = 10.0
DISC_NOISE = 6.0
PART_BACKGROUND, PART_SUB, PART_DISC = 0, 1, 2


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. ``n_train`` images form ``train_aug``; its first ``n_train_eval`` form ``train``
    (the split the localisation maps are scored on, as VOC train is a subset of train_aug); ``n_val`` more
    form ``val``."""

    classes: tuple[str, ...] = DEFAULT_CLASSES
    size: int = 128
    n_train: int = 640
    n_train_eval: int = 160
    n_val: int = 96
    max_objects: int = 2
    seed: int = 0
    extra: dict = field(default_factory=dict)


TUNING_SEED_OFFSET = 1  # the tuning split's images: the benchmark's seed + 1, another stream of the generator


def tuning_spec(spec: SyntheticSpec, n: int = 160) -> SyntheticSpec:
    """A *tuning split* for recipe choices (the DeepLab schedule, CRF widths): ``n`` images in the ``val`` of a
    dataset generated like ``spec`` but with another seed, so none of them is one of ``spec``'s ``train_aug`` or
    ``val`` images (its single training image is not used)."""
    return dataclasses.replace(spec, n_train=1, n_train_eval=1, n_val=n, seed=spec.seed + TUNING_SEED_OFFSET)


def class_colours(num_fg: int) -> tuple[np.ndarray, np.ndarray]:
    """``(disc, tint)``: ``(C, 3)`` float arrays, the discriminative RGB colour and the unit tint direction."""
    disc = np.array([colorsys.hsv_to_rgb(c / num_fg, 1.0, 1.0) for c in range(num_fg)]) * 255.0
    tint = disc - disc.mean(axis=1, keepdims=True)
    tint /= np.linalg.norm(tint, axis=1, keepdims=True)
    return disc, tint


def stripe_pattern(c: int, num_fg: int, size: int) -> np.ndarray:
    """The faint texture of class ``c``'s sub-discriminative part: a sinusoidal grating ``(size, size)`` in
    ``[-1, 1]`` whose angle and period depend on the class."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = math.pi * (c / num_fg)
    period = 6.0 + 2.0 * (c % 3)
    return np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period)


def _ellipse(h, w, cy, cx, ay, ax, theta):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    ct, st = math.cos(theta), math.sin(theta)
    u, v = ct * dx + st * dy, -st * dx + ct * dy
    return (u / ax) ** 2 + (v / ay) ** 2 <= 1.0


def generate_image(spec: SyntheticSpec, index: int):
    """One sample: ``(image (H,W,3) uint8, mask (H,W) uint8 in 0..C, parts (H,W) uint8, objects)`` where
    ``objects`` is a list of ``(class id, (xmin, ymin, xmax, ymax))``."""
    rng = np.random.default_rng([spec.seed, index])
    s = spec.size
    num_fg = len(spec.classes)
    disc_rgb, tint = class_colours(num_fg)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)

    # background: base colour + soft blobs + strong noise
    img = np.empty((s, s, 3), np.float32)
    img[:] = rng.uniform(85, 170, size=3)
    for _ in range(3):
        cy, cx, r = rng.uniform(0, s), rng.uniform(0, s), rng.uniform(0.2, 0.5) * s
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.uniform(-35, 35, size=3)
    img += rng.normal(0, BG_NOISE, size=img.shape)

    mask = np.zeros((s, s), np.uint8)
    parts = np.zeros((s, s), np.uint8)
    n_obj = int(rng.integers(1, spec.max_objects + 1))
    objects = []
    for c in rng.choice(num_fg, size=n_obj, replace=False):
        cls = int(c) + 1
        ay, ax = rng.uniform(0.18, 0.32, size=2) * s
        cy, cx = rng.uniform(0.3, 0.7, size=2) * s
        theta = rng.uniform(0, math.pi)
        body = _ellipse(s, s, cy, cx, ay, ax, theta)
        # discriminative part: a small ellipse (~15 % of the area) placed off-centre inside the object
        r = 0.38
        off = rng.uniform(-0.45, 0.45, size=2)
        ct, st = math.cos(theta), math.sin(theta)
        dcx = cx + ct * off[1] * ax - st * off[0] * ay
        dcy = cy + st * off[1] * ax + ct * off[0] * ay
        disc = _ellipse(s, s, dcy, dcx, r * ay, r * ax, theta) & body

        stripes = stripe_pattern(int(c), num_fg, s)
        body_rgb = 128.0 + BODY_TINT * tint[c] + STRIPE_AMPLITUDE * stripes[..., None]
        body_rgb = body_rgb + rng.normal(0, BODY_NOISE, size=(s, s, 3))
        disc_val = disc_rgb[c] + rng.normal(0, DISC_NOISE, size=(s, s, 3))
        img = np.where(body[..., None], body_rgb, img)
        img = np.where(disc[..., None], disc_val, img)
        mask[body] = cls
        parts[body] = PART_SUB
        parts[disc] = PART_DISC
        objects.append(cls)

    # boxes from the final mask (a later object may hide part of an earlier one)
    boxes = []
    for cls in objects:
        ys, xs = np.nonzero(mask == cls)
        if len(ys):
            boxes.append((cls, (int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1)))
    image = np.clip(img, 0, 255).astype(np.uint8)
    return image, mask, parts, boxes


def _annotation_xml(name: str, height: int, width: int, classes, boxes) -> str:
    objs = "".join(
        f"\t<object>\n\t\t<name>{classes[c]}</name>\n\t\t<difficult>0</difficult>\n\t\t<bndbox>"
        f"<xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox>\n\t</object>\n"
        for c, b in boxes
    )
    return (
        f"<annotation>\n\t<folder>synthetic</folder>\n\t<filename>{name}.jpg</filename>\n"
        f"\t<size><width>{width}</width><height>{height}</height><depth>3</depth></size>\n"
        f"\t<segmented>1</segmented>\n{objs}</annotation>\n"
    )


def generate_dataset(spec, out: str | os.PathLike, render=None) -> Path:
    """Write the dataset in VOC layout to ``out`` (resumable: existing complete images are kept, in a folder
    generated with the same spec; another spec into the same folder is an error naming it). ``render(spec,
    index)`` makes one sample (default :func:`generate_image`; the second benchmark passes
    ``rpc.data.creatures.generate_image`` with its own spec)."""
    render = render or generate_image
    out = Path(out)
    # an existing folder is extended or resumed only if it was generated with this spec and generator
    claim_output_dir(out, {"spec": dataclasses.asdict(spec), "generator": f"{render.__module__}.{render.__name__}"})
    classes = ("background",) + tuple(spec.classes)
    total = spec.n_train + spec.n_val
    names = [f"syn_{i:05d}" for i in range(total)]
    for i, name in enumerate(names):
        xml = out / "Annotations" / f"{name}.xml"
        if xml.is_file():  # the XML is written last: its presence means the sample is complete
            continue
        image, mask, parts, boxes = render(spec, i)
        with atomic_path(out / "JPEGImages" / f"{name}.jpg") as tmp:
            Image.fromarray(image).save(tmp, format="JPEG", quality=95)
        write_mask(out / "SegmentationClass" / f"{name}.png", mask)
        write_mask(out / "SegmentationPart" / f"{name}.png", parts)
        write_text_atomic(xml, _annotation_xml(name, *mask.shape, classes, boxes))
    seg = out / "ImageSets" / "Segmentation"
    write_list(seg / "train_aug.txt", names[: spec.n_train])
    write_list(seg / "train.txt", names[: spec.n_train_eval])
    write_list(seg / "val.txt", names[spec.n_train :])
    write_text_atomic(out / "classes.txt", "".join(f"{i} {c}\n" for i, c in enumerate(classes)))
    return out
