"""Intervals and verdicts (rpc.evaluation.uncertainty) on hand-made numbers with known answers."""

import math

import numpy as np
import pytest

from rpc.evaluation.confusion import ConfusionMatrix
from rpc.evaluation.uncertainty import (
    bootstrap_miou,
    miou_from_counts,
    paired_comparison,
    t_interval,
    verdict,
    verdict_sentence,
)


def _two_images():
    """Image A perfectly segmented, image B entirely wrong: per-class (tp, gt, pred) counts, K = 2."""
    a = ConfusionMatrix(2, per_image=True)
    a.update(np.array([[0, 0, 1, 1, 1]]), np.array([[0, 0, 1, 1, 1]]))  # A: IoU 1, 1
    a.update(np.array([[1, 1, 1, 0, 0]]), np.array([[0, 0, 0, 1, 1]]))  # B: IoU 0, 0
    return a


def test_per_image_counts_sum_to_the_confusion_matrix():
    cm = _two_images()
    tp, gt, pred = cm.per_image_counts()
    assert tp.tolist() == [[2, 3], [0, 0]]
    assert gt.tolist() == [[2, 3], [3, 2]]
    assert pred.tolist() == [[2, 3], [2, 3]]
    np.testing.assert_array_equal(tp.sum(0), np.diag(cm.matrix))
    np.testing.assert_array_equal(gt.sum(0), cm.matrix.sum(1))
    assert miou_from_counts(tp.sum(0), gt.sum(0), pred.sum(0)) == pytest.approx(cm.miou())


def test_bootstrap_of_two_images_matches_the_enumerated_distribution():
    """Resampling 2 images gives AA (p 1/4, mIoU 1), AB (p 1/2, the full-sample mIoU) or BB (p 1/4, mIoU 0)."""
    cm = _two_images()
    full = cm.miou()  # IoU 2/(5+4-2)... computed by the confusion matrix itself
    values = np.array([1.0, full, 0.0])
    p = np.array([0.25, 0.5, 0.25])
    std = math.sqrt(p @ values**2 - (p @ values) ** 2)
    b = bootstrap_miou(*cm.per_image_counts(), replicates=4000, seed=1)
    assert b["miou"] == pytest.approx(full)
    assert (b["low"], b["high"]) == (0.0, 1.0)  # both extremes have probability 1/4 > 2.5 %
    assert b["std"] == pytest.approx(std, rel=0.03)
    assert b["images"] == 2 and b["replicates"] == 4000


def test_bootstrap_of_identical_images_has_no_spread():
    cm = ConfusionMatrix(3, per_image=True)
    for _ in range(5):
        cm.update(np.array([[0, 1, 2, 2]]), np.array([[0, 1, 1, 2]]))
    b = bootstrap_miou(*cm.per_image_counts(), replicates=300)
    assert b["low"] == pytest.approx(cm.miou()) and b["high"] == pytest.approx(cm.miou())
    assert b["std"] == pytest.approx(0.0, abs=1e-12)


def test_bootstrap_is_repeatable_and_a_class_missing_from_a_replicate_is_left_out():
    cm = ConfusionMatrix(3, per_image=True)
    cm.update(np.array([[0, 1]]), np.array([[0, 1]]))  # classes 0, 1: perfect
    cm.update(np.array([[2, 0]]), np.array([[2, 2]]))  # class 2 half right, a background false positive
    b1 = bootstrap_miou(*cm.per_image_counts(), replicates=500, seed=3)
    b2 = bootstrap_miou(*cm.per_image_counts(), replicates=500, seed=3)
    assert b1 == b2
    assert b1["high"] == pytest.approx(1.0)  # the first image twice: classes 0 and 1 only, both perfect


def test_t_interval_known_values():
    r = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t_{0.975, 2} = 4.3027
    assert (r["mean"], r["std"]) == (2.0, 1.0)
    assert (r["low"], r["high"]) == pytest.approx((2 - half, 2 + half))
    r5 = t_interval([0.5, 1.5, 1.0, 2.0, 0.0])  # std sqrt(0.625), t_{0.975, 4} = 2.7764
    assert r5["half_width"] == pytest.approx(2.7764451051977987 * math.sqrt(0.625) / math.sqrt(5))
    assert math.isnan(t_interval([4.0])["half_width"])


@pytest.mark.parametrize(
    "a, b, expected, positive",
    [
        ([3.0, 2.0, 2.5, 3.5, 2.0], [0.0] * 5, "supported", 5),
        ([0.0] * 5, [3.0, 2.0, 2.5, 3.5, 2.0], "contradicted", 0),
        ([1.0, -1.0, 2.0, -2.0, 0.5], [0.0] * 5, "not resolved", 3),
        ([5.0], [1.0], "not resolved", 1),  # one seed: no interval, nothing settled
    ],
)
def test_paired_comparison_verdicts(a, b, expected, positive):
    c = paired_comparison(a, b)
    assert c["verdict"] == expected
    assert c["positive"] == positive
    assert c["diffs"] == [x - y for x, y in zip(a, b, strict=True)]


def test_verdict_edges_and_sentence():
    assert verdict(0.1, 2.0) == "supported" and verdict(-2.0, -0.1) == "contradicted"
    assert verdict(0.0, 2.0) == "not resolved" and verdict(math.nan, math.nan) == "not resolved"
    c = paired_comparison([3.0, 2.0, 2.5, 3.5, 2.0], [1.0] * 5)
    line = verdict_sentence("rpc", "sipe", c, "Local.Maps")
    assert line.startswith("rpc > sipe (Local.Maps): supported at 95% (+1.6, 95% CI +0.8..+2.4; better on 5/5")
    with pytest.raises(ValueError, match="paired"):
        paired_comparison([1.0, 2.0], [1.0])
