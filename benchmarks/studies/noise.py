"""Where the benchmark's spread comes from: every run of a study scored again on several splits, each score with
its bootstrap over images, then per method the spread over seeds split into evaluation and training noise, and
the paired comparisons with 95 % Student-t intervals.

    python -m benchmarks.studies.noise --results results --experiments rpc sipe cam --seeds 15 16 17 18 19 \\
        --splits train train_aug --pairs rpc:sipe rpc:cam sipe:cam --name noise_default

Reads ``<results>/data/prepared`` and, per run ``<experiment>-s<seed>``, ``cams/shard_*`` (Local.Maps, own
background) and ``pseudo_masks/merged`` if present (+denseCRF, 255 ignored as SIPE scores it, and 255 counted as
background). Writes ``benchmarks/out/<name>.json`` (every run, split and metric: mIoU, bootstrap interval and std,
per-class IoU) and ``<name>.md`` (the tables).

Evaluation noise = the bootstrap standard deviation (mean over the seeds): how much the score would move on
another sample of images of the same size. Every seed is scored on the same images, so the spread over seeds
contains at most that much of it; ``training_noise_min`` = sqrt(max(0, seed std^2 - evaluation noise^2)) is a
lower bound of the part that comes from training.
"""

from __future__ import annotations

import argparse
import math
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.common import write_result
from rpc.evaluation.uncertainty import paired_comparison
from rpc.utils.io import write_text_atomic

METRICS = ("local_maps", "crf_ignore", "crf_bg")
LABELS = {"local_maps": "Local.Maps (own bg)", "crf_ignore": "+denseCRF (255 ignored)",
          "crf_bg": "+denseCRF (255 = bg)"}  # fmt: skip


def score_run(dataset: str, run_dir: str, split: str) -> dict:
    """``{metric: {"miou", "bootstrap", "per_class_iou", ...}}`` of one run on one split (mIoU as fractions)."""
    from rpc.data.index import DatasetIndex
    from rpc.evaluation.local_maps import evaluate_cams
    from rpc.evaluation.masks import evaluate_mask_dir

    run = Path(run_dir)
    maps = evaluate_cams(dataset, split, sorted((run / "cams").glob("shard_*")))
    out = {"local_maps": {**maps["sipe"], "empty_foreground_maps": maps["empty_foreground_maps"]["final"]}}
    masks = run / "pseudo_masks" / "merged"
    if masks.is_dir():
        index = DatasetIndex.load(dataset)
        for key, uncertain in (("crf_ignore", "ignore"), ("crf_bg", "background")):
            out[key] = evaluate_mask_dir(index, split, masks, uncertain=uncertain)
    return out


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else math.nan


def aggregate(scores: dict, experiments, seeds, splits) -> dict:
    """Per experiment, split and metric: values over seeds (%), mean, std, evaluation noise, training noise
    (lower bound) and the per-class IoU spread."""
    table = {}
    for e in experiments:
        for split in splits:
            for m in METRICS:
                runs = [scores[f"{e}-s{s}"][split].get(m) for s in seeds]
                if any(r is None for r in runs):
                    continue
                values = [100 * r["miou"] for r in runs]
                boot = statistics.mean(100 * r["bootstrap"]["std"] for r in runs)
                std = _std(values)
                classes = runs[0]["per_class_iou"]
                per_class = {c: [100 * (r["per_class_iou"][c] or 0.0) for r in runs] for c in classes}
                table[f"{e}|{split}|{m}"] = {
                    "values": values, "mean": statistics.mean(values), "std": std, "eval_noise": boot,
                    "training_noise_min": math.sqrt(max(0.0, std**2 - boot**2)) if not math.isnan(std) else math.nan,
                    "per_class_std": {c: _std(v) for c, v in per_class.items()},
                    "per_class_mean": {c: statistics.mean(v) for c, v in per_class.items()},
                }  # fmt: skip
    return table


def compare(scores: dict, pairs, seeds, splits) -> dict:
    out = {}
    for a, b in pairs:
        for split in splits:
            for m in METRICS:
                ra = [scores[f"{a}-s{s}"][split].get(m) for s in seeds]
                rb = [scores[f"{b}-s{s}"][split].get(m) for s in seeds]
                if any(r is None for r in ra + rb):
                    continue
                out[f"{a}-{b}|{split}|{m}"] = paired_comparison([100 * r["miou"] for r in ra],
                                                                [100 * r["miou"] for r in rb])  # fmt: skip
    return out


def markdown(table: dict, comparisons: dict, experiments, splits, seeds) -> str:
    lines = [f"Seeds {', '.join(map(str, seeds))}. mIoU %: mean ± std over seeds; eval = bootstrap std over the "
             "scored images (mean over seeds); train ≥ = the training noise's lower bound.", "",
             "| experiment | split | metric | mean ± std | eval | train ≥ | per seed |",
             "|---|---|---|---:|---:|---:|---|"]
    for e in experiments:
        for split in splits:
            for m in METRICS:
                t = table.get(f"{e}|{split}|{m}")
                if t:
                    lines.append(f"| {e} | {split} | {LABELS[m]} | {t['mean']:.1f} ± {t['std']:.1f} | "
                                 f"{t['eval_noise']:.1f} | {t['training_noise_min']:.1f} | "
                                 + " ".join(f"{v:.1f}" for v in t["values"]) + " |")  # fmt: skip
    lines += ["", "| pair | split | metric | mean [95% t interval] | better on | verdict |",
              "|---|---|---|---:|---:|---|"]
    for key, c in comparisons.items():
        pair, split, m = key.split("|")
        lines.append(f"| {pair.replace('-', ' − ')} | {split} | {LABELS[m]} | {c['mean']:+.1f} "
                     f"[{c['low']:+.1f}, {c['high']:+.1f}] | {c['positive']}/{c['n']} | {c['verdict']} |")  # fmt: skip
    lines += ["", "Per-class IoU, std over seeds (Local.Maps, first split):", ""]
    first = splits[0]
    classes = next(iter(table.values()))["per_class_std"]
    lines += ["| experiment | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
    for e in experiments:
        t = table.get(f"{e}|{first}|local_maps")
        if t:
            lines.append(f"| {e} | " + " | ".join(f"{t['per_class_mean'][c]:.0f} ± {t['per_class_std'][c]:.1f}"
                                                   for c in classes) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", required=True, help="a workflow's results folder")
    p.add_argument("--experiments", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", type=int, required=True)
    p.add_argument("--splits", nargs="+", default=["train", "train_aug"])
    p.add_argument("--pairs", nargs="*", default=["rpc:sipe", "rpc:cam", "sipe:cam"], metavar="A:B")
    p.add_argument("--name", required=True, help="output name under benchmarks/out/")
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args(argv)
    results = Path(a.results)
    dataset = str(results / "data" / "prepared")
    runs = [f"{e}-s{s}" for e in a.experiments for s in a.seeds]
    jobs = [(run, split) for run in runs for split in a.splits]
    with ProcessPoolExecutor(a.workers) as pool:
        done = pool.map(score_run, [dataset] * len(jobs), [str(results / r) for r, _ in jobs], [s for _, s in jobs])
        scores: dict = {}
        for (run, split), res in zip(jobs, done, strict=True):
            scores.setdefault(run, {})[split] = res
    pairs = [tuple(x.split(":")) for x in a.pairs]
    table = aggregate(scores, a.experiments, a.seeds, a.splits)
    comparisons = compare(scores, pairs, a.seeds, a.splits)
    md = markdown(table, comparisons, a.experiments, a.splits, a.seeds)
    slim = {run: {split: {m: {k: v for k, v in r.items() if k in ("miou", "bootstrap", "per_class_iou", "images")}
                          for m, r in by_split.items()} for split, by_split in res.items()}
            for run, res in scores.items()}  # fmt: skip
    path = write_result(a.name, {"results": str(results), "seeds": a.seeds, "splits": a.splits, "table": table,
                                 "comparisons": comparisons, "runs": slim})  # fmt: skip
    write_text_atomic(path.with_suffix(".md"), md)
    print(md)


if __name__ == "__main__":
    main()
