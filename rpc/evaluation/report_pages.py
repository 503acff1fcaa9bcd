"""What the Snakemake report shows besides the galleries: the summary tables as HTML (the report renders HTML and
images; Markdown items are only download buttons) and the plots (training curves, per-class IoU, IRN sweep).

``markdown_to_html`` renders our Markdown summaries with markdown-it-py (CommonMark + pipe tables); raw HTML in
the text is not passed through but shown escaped.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

from rpc.evaluation.plots import pyplot, save_figure

STYLE = """body{font-family:system-ui,sans-serif;max-width:75em;margin:1em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #ccc;padding:.2em .6em}
th{background:#f3f3f3}code{background:#f3f3f3;padding:0 .2em}h1,h2{margin-top:1.2em}"""


def markdown_to_html(text: str, title: str) -> str:
    """A whole HTML page from Markdown (CommonMark with tables; raw HTML escaped, not interpreted)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + body + "</body></html>\n")  # fmt: skip


def _read_json(path: Path):
    return json.loads(Path(path).read_text()) if Path(path).is_file() else None


def _runs_by_experiment(runs: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for run in runs:
        out.setdefault(re.sub(r"-s\d+$", "", run), []).append(run)
    return out


CURVE_TITLES = {
    "total": "classifier: total loss L",
    "cls": "classifier: L_cls (stage 1's classification loss)",
    "aug": "classifier: L_aug (stage 2's loss on the erased image)",
    "gsc": "classifier: L_GSC (RS-CAM vs CAM consistency)",
    "lr": "classifier: learning rate (backbone)",
}


def plot_curves(results: str | os.PathLike, runs: list[str], out: str | os.PathLike) -> None:
    """One figure: each classifier's loss terms and learning rate (one colour per experiment, one line per
    seed), the pretraining's held-out accuracy per epoch and each DeepLab training's loss. One legend for the whole
    figure, outside the panels; a learning-rate schedule shared by every run is drawn once."""
    plt = pyplot()
    results = Path(results)
    terms = list(CURVE_TITLES)
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    flat = list(axes.flat)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    by_experiment = _runs_by_experiment(runs)
    upper = by_experiment.pop("ground_truth", [])  # DeepLab on the true masks: its loss drawn apart, below
    handles: dict[str, object] = {}
    schedules: list[tuple[str, list]] = []
    for n, (experiment, members) in enumerate(by_experiment.items()):
        colour = colours[n % len(colours)]
        for run in members:
            log = _read_json(results / run / "train_log.json") or []
            for ax, term in zip(flat[:4], terms[:4], strict=True):
                points = [(r["step"], r[term]) for r in log if term in r]
                if points:
                    (line,) = ax.plot(*zip(*points, strict=True), color=colour, lw=1)
                    handles.setdefault(experiment, line)
            lr = [(r["step"], r["lr"]) for r in log if "lr" in r]
            if lr:
                schedules.append((experiment, lr))
            seg = _read_json(results / run / "segmentation" / "train_log.json") or []
            points = [(r["step"], r["loss"]) for r in seg if "loss" in r]
            if points:
                (line,) = flat[6].plot(*zip(*points, strict=True), color=colour, lw=1)
                handles.setdefault(experiment, line)
    if schedules and all(points == schedules[0][1] for _, points in schedules):
        flat[4].plot(*zip(*schedules[0][1], strict=True), color="k", lw=1)
        flat[4].text(0.98, 0.95, "the same schedule in every run", transform=flat[4].transAxes, ha="right",
                     va="top", fontsize=8)  # fmt: skip
    else:
        for experiment, points in schedules:
            n = list(by_experiment).index(experiment)
            flat[4].plot(*zip(*points, strict=True), color=colours[n % len(colours)], lw=1)
    for ax, term in zip(flat[:5], terms, strict=True):
        ax.set_title(CURVE_TITLES[term], fontsize=10)
        ax.set_xlabel("step")
    gt = _read_json(results / upper[0] / "segmentation" / "train_log.json") or [] if upper else []  # first seed
    if gt:
        (line,) = flat[6].plot([r["step"] for r in gt if "loss" in r], [r["loss"] for r in gt if "loss" in r], "k--",
                               lw=1)  # fmt: skip
        handles["DeepLab on the ground truth"] = line
    if not flat[6].lines:
        flat[6].text(0.5, 0.5, "no DeepLab training in these runs", transform=flat[6].transAxes, ha="center")
    flat[6].set_title("DeepLab: training loss", fontsize=10)
    flat[6].set_xlabel("iteration")
    pre = _read_json(results / "pretrain" / "report.json")
    if pre:
        epochs = pre["epochs"]
        flat[5].plot([e["epoch"] for e in epochs], [100 * e["val_accuracy"] for e in epochs], "o-", color="k")
    flat[5].set_title("pretraining: held-out accuracy (%)", fontsize=10)
    flat[5].set_xlabel("epoch")
    flat[7].axis("off")
    if handles:  # one legend, in the empty eighth panel
        flat[7].legend(list(handles.values()), list(handles), loc="center", title="experiment (one line per seed)")
    fig.tight_layout()
    save_figure(fig, out, dpi=80)


def _per_class_bars(ax, groups: dict[str, list[dict]], title: str) -> list[str]:
    """Per-class IoU (%) bars, one colour per experiment: the mean over its seeds, the seeds' range as error bars.
    ``groups``: experiment -> its runs' ``{"per_class_iou": {class: IoU or None}}``. Returns the class names."""
    import numpy as np

    width = 0.8 / max(len(groups), 1)
    classes: list[str] = []
    for n, (experiment, scores) in enumerate(groups.items()):
        classes = list(scores[0]["per_class_iou"])
        iou = 100 * np.array([[s["per_class_iou"][c] if s["per_class_iou"][c] is not None else np.nan
                               for c in classes] for s in scores], dtype=float)  # fmt: skip
        x = np.arange(len(classes)) + n * width
        seen = ~np.isnan(iou).all(0)  # a class absent from every scored image has no IoU
        mean, low, high = (np.full(len(classes), np.nan) for _ in range(3))
        mean[seen], low[seen], high[seen] = (f(iou[:, seen], 0) for f in (np.nanmean, np.nanmin, np.nanmax))
        ax.bar(x, mean, width, yerr=[mean - low, high - mean], capsize=2,
               label=f"{experiment} ({len(scores)} seed{'s' if len(scores) > 1 else ''})")  # fmt: skip
    ax.set_xticks(np.arange(len(classes)) + width * (len(groups) - 1) / 2, classes, rotation=45, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.3)  # outside the bars
    return classes


def plot_local_maps(results: str | os.PathLike, runs: list[str], out: str | os.PathLike) -> None:
    """Per-class Local.Maps IoU (own background; mean over each experiment's seeds, the seeds' range as error
    bars), the IRN threshold sweep (mean over seeds) and the best run's confusion matrix."""
    import numpy as np

    plt = pyplot()
    results = Path(results)
    scores_of = {r: d for r in runs if (d := _read_json(results / r / "local_maps.json"))}
    groups = {e: [scores_of[r] for r in m if r in scores_of] for e, m in _runs_by_experiment(list(scores_of)).items()}
    fig, (bars, sweep, conf) = plt.subplots(1, 3, figsize=(20, 4.8), gridspec_kw={"width_ratios": [3, 1, 1.2]})
    classes = _per_class_bars(bars, {e: [s["sipe"] for s in scores] for e, scores in groups.items()},
                              "Local.Maps per class (own background; bars: seeds' range)")  # fmt: skip
    for experiment, scores in groups.items():
        thresholds = [float(t) for t in scores[0]["irn"]["sweep"]]
        values = 100 * np.array([[s["irn"]["sweep"][t] for t in scores[0]["irn"]["sweep"]] for s in scores]).mean(0)
        sweep.plot(thresholds, values, label=experiment)
    sweep.set_title("IRN background threshold sweep")
    sweep.set_xlabel("threshold")
    sweep.set_ylabel("mIoU (%)")
    sweep.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=len(groups))
    _plot_confusion(conf, {r: d["sipe"] for r, d in scores_of.items()}, classes, "maps' label")
    fig.tight_layout()
    save_figure(fig, out, dpi=80)


def plot_segmentation(results: str | os.PathLike, runs: list[str], out: str | os.PathLike) -> None:
    """DeepLab on the validation split: per-class IoU of each experiment (the upper bound included; mean over seeds,
    the seeds' range as error bars) and the confusion matrix of each experiment's best run (rows: ground truth)."""
    plt = pyplot()
    results = Path(results)
    scores_of = {r: d for r in runs if (d := _read_json(results / r / "segmentation" / "val.json"))}
    groups = {e: [scores_of[r] for r in m] for e, m in _runs_by_experiment(list(scores_of)).items()}
    n = max(len(groups), 1)  # the bars across the top, one confusion matrix per experiment below
    fig = plt.figure(figsize=(max(11.0, 3.4 * n), 8.6))
    grid = fig.add_gridspec(2, n, height_ratios=[1, 1.1])
    bars = fig.add_subplot(grid[0, :])
    confs = [fig.add_subplot(grid[1, k]) for k in range(len(groups))]
    classes = _per_class_bars(bars, groups, "DeepLab val per class (bars: seeds' range)")
    for ax, (experiment, members) in zip(confs, _runs_by_experiment(list(scores_of)).items(), strict=True):
        _plot_confusion(ax, {r: scores_of[r] for r in members}, classes, "predicted label", experiment)
    fig.tight_layout()
    save_figure(fig, out, dpi=80)


def _plot_confusion(ax, scores_of: dict[str, dict], classes: list[str], predicted: str, label: str = "") -> None:
    """The best run's (highest mIoU) confusion matrix among ``scores_of`` (run -> a score dict with ``miou`` and
    ``confusion``), each ground-truth row as fractions."""
    import numpy as np

    scored = [(d["miou"], r, d) for r, d in scores_of.items() if "confusion" in d]
    if not scored:
        ax.axis("off")
        return
    miou, run, best = max(scored, key=lambda t: t[0])
    matrix = np.array(best["confusion"], dtype=float)
    rows = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    if len(classes) <= 25:  # names readable; COCO's 81 stay unlabelled
        ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel(predicted)
    ax.set_ylabel("ground truth")
    head = f"{label}: " if label else ""
    ax.set_title(f"{head}best run {run} ({100 * miou:.1f} mIoU)\nconfusion, each row sums to 1", fontsize=9)
