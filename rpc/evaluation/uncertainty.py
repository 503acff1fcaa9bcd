"""How sure a number is: a bootstrap over images for one run's mIoU, Student-t intervals over seeds, and the
verdict on a claimed ordering ("A > B") from paired per-seed differences.

Two sources of spread are kept apart:

- *evaluation noise*: which images happened to be scored. :func:`bootstrap_miou` resamples the scored images with
  replacement (the classic percentile bootstrap; the mIoU is recomputed from the resampled per-class counts, so
  it is the same statistic, not a mean of per-image scores). Every seed of a benchmark is scored on the same
  images, so only the part of this noise that differs between models enters the spread over seeds.
- *training noise*: which seed (initialisation, data order, augmentation) trained the model. The spread of a
  method's score over seeds; a claim "A > B" is judged on the per-seed differences A - B (same seed, same data),
  with a two-sided Student-t interval over the seeds (:func:`paired_comparison`).
"""

from __future__ import annotations

import math
import statistics

import numpy as np

VERDICTS = ("supported", "not resolved", "contradicted")


def miou_from_counts(tp: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """mIoU from per-class counts ``(..., K)`` (summed over images): NaN classes (no pixel in ground truth or
    prediction) left out of the mean, as in :class:`rpc.evaluation.confusion.ConfusionMatrix`. Returns ``(...)``."""
    union = gt + pred - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    present = ~np.isnan(iou)
    return np.where(present.any(-1), np.nansum(iou, -1) / np.maximum(present.sum(-1), 1), np.nan)


def bootstrap_miou(tp, gt, pred, replicates: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Percentile bootstrap of the mIoU over images.

    ``tp``, ``gt``, ``pred``: ``(N, K)`` per-image counts (``ConfusionMatrix.per_image_counts``). Each replicate
    draws N images with replacement (multinomial counts, fixed ``seed``), sums their counts and recomputes the
    mIoU. Returns ``{"miou", "low", "high", "std", "level", "replicates", "images"}``: the full-sample mIoU, the
    ``level`` percentile interval of the replicates and their standard deviation (the evaluation noise).
    """
    tp, gt, pred = (np.asarray(a, dtype=np.float64) for a in (tp, gt, pred))
    n = len(tp)
    if n == 0:
        raise ValueError("bootstrap over zero images")
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, replicates, 200):  # (chunk, N) weights at a time: memory bounded for large N
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=min(200, replicates - start)).astype(np.float64)
        values.append(miou_from_counts(w @ tp, w @ gt, w @ pred))
    values = np.concatenate(values)
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return {"miou": float(miou_from_counts(tp.sum(0), gt.sum(0), pred.sum(0))), "low": float(low),
            "high": float(high), "std": float(np.nanstd(values, ddof=1)), "level": level,
            "replicates": replicates, "images": n}  # fmt: skip


def t_quantile(level: float, dof: int) -> float:
    """Two-sided Student-t critical value: ``P(|T| <= q) = level`` with ``dof`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, dof))


def t_interval(values, level: float = 0.95) -> dict:
    """Mean of ``values`` with its two-sided Student-t interval: ``{"mean", "std", "low", "high", "half_width",
    "n", "level"}``. With one value the interval is unknown (NaN)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        raise ValueError("t interval of no values")
    mean = statistics.mean(values)
    std = statistics.stdev(values) if n > 1 else math.nan
    half = t_quantile(level, n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "std": std, "low": mean - half, "high": mean + half, "half_width": half, "n": n,
            "level": level}  # fmt: skip


def verdict(low: float, high: float) -> str:
    """The claim "difference > 0" from the interval of the difference: ``supported`` (interval above 0),
    ``contradicted`` (below 0) or ``not resolved`` (it contains 0, or is unknown)."""
    if low > 0:
        return "supported"
    if high < 0:
        return "contradicted"
    return "not resolved"


def paired_comparison(a, b, level: float = 0.95) -> dict:
    """The claim "A > B" on paired runs (same seeds, in the same order): the t interval of the differences
    ``a - b``, the number of seeds where A is better and the :func:`verdict`."""
    if len(a) != len(b):
        raise ValueError(f"paired comparison of {len(a)} and {len(b)} runs")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    interval = t_interval(diffs, level)
    return {**interval, "diffs": diffs, "positive": sum(d > 0 for d in diffs),
            "verdict": verdict(interval["low"], interval["high"])}  # fmt: skip


def verdict_sentence(first: str, second: str, comparison: dict, what: str) -> str:
    """One line: ``rpc > sipe (Local.Maps): supported at 95% (+2.1, 95% CI +0.4..+3.8; better on 5/5 seeds).``"""
    c = comparison
    pct = f"{100 * c['level']:.0f}%"
    ci = "no interval with one seed" if c["n"] < 2 else f"{pct} CI {c['low']:+.1f}..{c['high']:+.1f}"
    return (f"{first} > {second} ({what}): {c['verdict']} at {pct} ({c['mean']:+.1f}, {ci}; better on "
            f"{c['positive']}/{c['n']} seeds).")  # fmt: skip
