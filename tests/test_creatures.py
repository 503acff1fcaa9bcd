"""The second synthetic benchmark (rpc.data.creatures): deterministic, VOC-format with non-square images, its
parts separable and class-specific, and disjoint from the pretraining corpus."""

import colorsys

import numpy as np
import pytest
from test_corpus import orientation_concentration  # tests/ is on sys.path under pytest

from rpc.data.corpus import MIN_SATURATION
from rpc.data.creatures import BODY_HUES, BODY_SATURATION, CLASSES, CreaturesSpec, generate_image, head_pattern
from rpc.data.palette import read_mask
from rpc.data.synthetic import PART_DISC, PART_SUB, generate_dataset
from rpc.data.voc import prepare_voc


def test_deterministic_seeded_and_not_square():
    spec = CreaturesSpec()
    a, b = generate_image(spec, 5), generate_image(spec, 5)
    for x, y in zip(a[:3], b[:3], strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], generate_image(CreaturesSpec(seed=1), 5)[0])
    shapes = {generate_image(spec, i)[1].shape for i in range(40)}
    assert len(shapes) >= 4 and any(h != w for h, w in shapes)


def test_written_dataset_is_voc_format_with_parts(tmp_path):
    from rpc.data.creatures import generate_image as render

    spec = CreaturesSpec(n_train=10, n_train_eval=5, n_val=4)
    raw = generate_dataset(spec, tmp_path / "raw", render)
    index = prepare_voc(raw, tmp_path / "prepared", name="synthetic")
    assert index.classes == ("background",) + CLASSES
    assert len(index.names("train_aug")) == 10 and len(index.names("val")) == 4
    for name in index.names("train_aug"):
        mask = index.read_mask(name)
        assert index.read_image(name).shape[:2] == mask.shape
        present = sorted(int(v) for v in np.unique(mask) if v)
        assert present == [int(i) + 1 for i in np.nonzero(index.label(name))[0]]
        parts = read_mask(raw / "SegmentationPart" / f"{name}.png")
        assert ((parts > 0) == (mask > 0)).all()  # every object pixel is a head or a body pixel


def _parts(n=120):
    """Per creature: (class, head pixels (N, 3), body pixels (N, 3)) of the rendered images (before JPEG)."""
    out = []
    for i in range(n):
        image, mask, parts, _ = generate_image(CreaturesSpec(), i)
        for c in np.unique(mask[mask > 0]):
            head = (mask == c) & (parts == PART_DISC)
            body = (mask == c) & (parts == PART_SUB)
            if head.sum() >= 30 and body.sum() >= 30:
                out.append((int(c), image[head].astype(float), image[body].astype(float)))
    return out


def test_head_is_a_small_part_and_the_body_a_faint_class_specific_tint():
    items = _parts()
    share = [len(h) / (len(h) + len(b)) for _, h, b in items]
    assert 0.1 < np.median(share) < 0.25
    # bodies: nearest class centroid of the mean tint (colour less its grey level: the value varies per creature),
    # fitted on one half, tested on the other
    feats = np.array([b.mean(0) - b.mean() for _, _, b in items])
    cls = np.array([c for c, _, _ in items])
    half = len(items) // 2
    cents = np.array([feats[:half][cls[:half] == c].mean(0) for c in range(1, len(CLASSES) + 1)])
    pred = np.argmin(((feats[half:, None] - cents[None]) ** 2).sum(-1), axis=1) + 1
    assert np.mean(pred == cls[half:]) > 0.9
    # ... and faint: the body's saturation stays near BODY_SATURATION, far below the head's contrast
    sat = [colorsys.rgb_to_hsv(*(b.mean(0) / 255))[1] for _, _, b in items]
    assert np.median(sat) == pytest.approx(BODY_SATURATION, abs=0.05)
    head_contrast = np.median([h.std(0).mean() for _, h, _ in items])
    body_contrast = np.median([b.std(0).mean() for _, _, b in items])
    assert head_contrast > 5 * body_contrast


def test_heads_are_class_specific_gratings():
    n = len(CLASSES)
    for c in range(n):
        assert orientation_concentration(head_pattern(c, n, 64, 64)) > 0.8
    # two classes never share orientation and period
    assert len({(round(180 * c / n), 6 + c % 3) for c in range(n)}) == n


def test_bodies_stay_below_the_corpus_saturation():
    """Every corpus object has saturation >= MIN_SATURATION and no corpus texture is a grating
    (tests/test_corpus.py); measured on the rendered pixels, the creatures' bodies stay far below that saturation
    (and their heads are gratings, above), so no corpus class looks like a benchmark class."""
    sat = [colorsys.rgb_to_hsv(*(b.mean(0) / 255))[1] for _, _, b in _parts(60)]
    assert np.percentile(sat, 95) < MIN_SATURATION - 0.1
    assert len(set(BODY_HUES)) == len(CLASSES)
