"""The summary: every run's numbers, the paper's Table 1/4 over seeds (mean +- std, paired differences), and
the part-level evidence, with the evaluation convention of every column.

A *run* is one experiment trained with one seed; its results live in ``<results>/<experiment>-s<seed>/``:
``local_maps.json`` (eval-cams), ``pseudo_masks.json`` / ``pseudo_masks_ignore.json`` (eval-masks with 255 as
background / ignored), ``segmentation/val.json`` / ``segmentation/val_crf.json`` (eval-masks of the DeepLab
predictions) and, on the synthetic benchmark, ``parts.json`` (eval-parts). The files come from the rule's declared
inputs (``rpc.evaluation.declared``); one that is not declared or does not exist is an error. The
``ground_truth`` experiment (DeepLab on the true masks, the upper bound; one run per seed) has only the
segmentation files; a run of imported maps (config ``imported_maps``, ``<results>/<name>/``) has every file but no
seed. The DeepLab table sets each method's DeepLab val beside the pseudo masks it was trained on and beside the
upper bound of the same seed.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from rpc.data.index import DatasetIndex
from rpc.evaluation.declared import DeclaredFiles
from rpc.evaluation.uncertainty import paired_comparison, verdict_sentence
from rpc.utils.io import DataError, write_json_atomic, write_text_atomic
from rpc.utils.provenance import summary_line

# The paper's numbers (mIoU %). VOC: Tables 1, 2 (ResNet-101 DeepLabv2) and 4 (the CAM row); COCO: Table 3.
PAPER = {
    "voc": {
        "cam": {"local_maps": 50.1},
        "sipe": {"local_maps": 58.6, "crf": 64.7, "seg_val": 68.8},
        "rpc": {"local_maps": 60.5, "crf": 70.5, "seg_val": 70.7},
    },
    "coco": {"sipe": {"seg_val": 40.6}, "rpc": {"seg_val": 44.5}},
}
COLUMNS = (  # key, header, file, how to read the number
    ("local_maps", "Local.Maps (own bg)", "local_maps.json", lambda r: r["sipe"]["miou"]),
    ("local_maps_irn", "Local.Maps (IRN best t)", "local_maps.json", lambda r: r["irn"]["best_miou"]),
    ("crf", "+denseCRF (255 = bg)", "pseudo_masks.json", lambda r: r["miou"]),
    ("crf_ignore", "+denseCRF (255 ignored)", "pseudo_masks_ignore.json", lambda r: r["miou"]),
    ("seg_val", "DeepLab val", "segmentation/val.json", lambda r: r["miou"]),
    ("seg_val_crf", "DeepLab val + CRF", "segmentation/val_crf.json", lambda r: r["miou"]),
)
SEG_KEYS = ("seg_val", "seg_val_crf")
PAIRS = (("rpc", "sipe"), ("rpc", "cam"), ("sipe", "cam"))  # the paper's claims: RPC > SIPE > CAM
# the columns that get a verdict sentence per pair: the headline of each stage (SIPE's conventions)
VERDICT_KEYS = ("local_maps", "crf_ignore", "seg_val")
PART_KEYS = (("disc_recall", "disc. part recall"), ("sub_recall", "sub-disc. part recall"),
             ("bg_false_positive", "background FP rate"))  # fmt: skip


def run_row(files: DeclaredFiles, run: str, segmentation_only: bool = False) -> dict:
    """``{column key: mIoU %}`` of one run, plus ``uncertain_fraction``, ``irn_threshold``, ``irn_at_edge``,
    ``local_maps_split`` and ``parts`` (part-level scores, when ``parts.json`` is declared)."""
    row: dict = {}
    for key, _, file, read in COLUMNS:
        if segmentation_only and key not in SEG_KEYS:
            row[key] = None
            continue
        res = json.loads(files.path(run, file).read_text())
        row[key] = 100 * read(res)
        row.setdefault("provenance", {}).update(res.get("provenance") or {})  # what made the number
        if key == "crf":
            row["uncertain_fraction"] = res["uncertain_fraction"]
        if key == "local_maps":
            if "bootstrap" in res["sipe"]:  # the evaluation noise of this run's headline number
                b = res["sipe"]["bootstrap"]
                row["local_maps_bootstrap"] = {"low": 100 * b["low"], "high": 100 * b["high"], "std": 100 * b["std"]}
            row["irn_threshold"] = res["irn"]["best_threshold"]
            row["irn_at_edge"] = res["irn"]["at_edge"]
            row["local_maps_split"] = f"{res['split']} ({res['images']})"
    if not segmentation_only and files.has(run, "parts.json"):
        row["parts"] = json.loads(files.path(run, "parts.json").read_text())
    return row


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _pm(values: list[float] | None) -> str:
    if not values:
        return "-"
    m, s = mean_std(values)
    return f"{m:.1f} ± {s:.1f}" if len(values) > 1 else f"{m:.1f}"


def _paired_cell(c: dict | None) -> str:
    if c is None:
        return "-"
    interval = f" [{c['low']:+.1f}, {c['high']:+.1f}]" if c["n"] > 1 else ""
    return f"{c['mean']:+.1f}{interval} ({c['positive']}/{c['n']})"


def paper_reference(dataset_dir: str | os.PathLike | None, dataset_kind: str) -> dict:
    """The paper's values, only where the dataset *is* PASCAL VOC 2012 or MS COCO 2014 (its classes are the
    benchmark's): a VOC-format folder with its own classes gets none."""
    if dataset_kind not in PAPER or dataset_dir is None:
        return {}
    classes = DatasetIndex.load(dataset_dir).classes
    if dataset_kind == "voc":
        from rpc.data.voc import VOC_CLASSES

        return PAPER["voc"] if tuple(classes) == tuple(VOC_CLASSES) else {}
    from importlib import resources

    from rpc.data.index import read_classes

    coco = read_classes(Path(str(resources.files("rpc") / "resources" / "coco" / "classes.txt")))
    return PAPER["coco"] if tuple(classes) == tuple(coco) else {}


UPPER_BOUND = "ground_truth"  # DeepLab trained on the true masks


def _segmentation_only(rows: dict[str, dict], e: str, ss: list[int]) -> bool:
    return all(rows[f"{e}-s{s}"]["local_maps"] is None for s in ss)


def deeplab_table(rows: dict[str, dict], seeds: dict[str, list[int]]) -> dict | None:
    """Per method: its DeepLab val against the pseudo masks it was trained on (+denseCRF, 255 ignored, on the
    maps' split) and against the upper bound of the same seed (``ground_truth``), as values over the seeds."""
    if UPPER_BOUND not in seeds:
        return None
    table = {}
    for e, ss in seeds.items():
        if e == UPPER_BOUND or _segmentation_only(rows, e, ss):
            continue
        shared = [s for s in ss if s in seeds[UPPER_BOUND]]
        row = {s: rows[f"{e}-s{s}"] for s in ss}
        table[e] = {
            "seg_val": [row[s]["seg_val"] for s in ss],
            "pseudo_masks": [row[s]["crf_ignore"] for s in ss],
            "seg_minus_pseudo": [row[s]["seg_val"] - row[s]["crf_ignore"] for s in ss],
            "seg_minus_upper": [row[s]["seg_val"] - rows[f"{UPPER_BOUND}-s{s}"]["seg_val"] for s in shared],
        }
    return table


def aggregate(rows: dict[str, dict], seeds: dict[str, list[int]]) -> dict:
    """Per experiment and column: the values over its seeds; per claimed pair and column: the paired comparison
    on the seeds both experiments share (same seed, same data; :func:`rpc.evaluation.uncertainty.paired_comparison`:
    differences, their mean with a 95 % Student-t interval, seeds where the first is better, verdict); the seeds
    on which CAM < SIPE < RPC holds."""
    agg = {e: {k: [v for s in ss if (v := rows[f"{e}-s{s}"][k]) is not None] for k, *_ in COLUMNS}
           for e, ss in seeds.items()}  # fmt: skip

    def shared(*names):
        return [s for s in seeds[names[0]] if all(s in seeds[n] for n in names[1:])]

    def value(e, s, k):
        return rows[f"{e}-s{s}"][k]

    pairs = {}
    for a, b in PAIRS:
        if a in seeds and b in seeds:
            common = shared(a, b)
            pairs[f"{a}-{b}"] = {
                k: paired_comparison([value(a, s, k) for s in common], [value(b, s, k) for s in common])
                for k, *_ in COLUMNS
            }
    order = None
    if all(e in seeds for e in ("cam", "sipe", "rpc")):
        common = shared("cam", "sipe", "rpc")
        order = {k: sum(value("cam", s, k) < value("sipe", s, k) < value("rpc", s, k) for s in common)
                 for k, *_ in COLUMNS}  # fmt: skip
        order["seeds"] = len(common)
    return {"values": agg, "pairs": pairs, "ordering_holds_on_seeds": order, "deeplab": deeplab_table(rows, seeds)}


def part_table(rows: dict[str, dict], seeds: dict[str, list[int]]) -> dict | None:
    """Part-level scores (%) per experiment, over its seeds: maps (final and per stage) and pseudo masks."""
    seeds = {e: ss for e, ss in seeds.items() if not _segmentation_only(rows, e, ss)}
    if not seeds or not all("parts" in rows[f"{e}-s{s}"] for e, ss in seeds.items() for s in ss):
        return None
    table = {}
    for e, ss in seeds.items():
        runs = [rows[f"{e}-s{s}"]["parts"] for s in ss]
        entry = {}
        for kind in ("maps", "pseudo_masks"):
            entry[kind] = {k: [100 * r[kind][k] for r in runs] for k, _ in PART_KEYS}
        n_stages = len(runs[0]["stage_maps"] or [])
        entry["stage_maps"] = [{k: [100 * r["stage_maps"][i][k] for r in runs] for k, _ in PART_KEYS}
                               for i in range(n_stages)]  # fmt: skip
        entry["pseudo_masks"]["uncertain_sub"] = [100 * r["pseudo_masks"]["uncertain"]["sub"] for r in runs]
        table[e] = entry
    return table


def _markdown(rows, seeds: dict[str, list[int]], extra, agg, parts, paper, dataset_kind) -> list[str]:
    experiments = list(seeds)
    all_seeds = sorted({s for ss in seeds.values() for s in ss})
    lines = ["# Summary", "", f"Dataset: {dataset_kind}. mIoU (%)."]
    if paper:
        lines[-1] += " The paper's values in parentheses (VOC: Tables 1, 2, 4; COCO: Table 3)."
    header = "| | " + " | ".join(h for _, h, _, _ in COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(COLUMNS)
    if experiments:
        lines += ["", f"## Table 1 / Table 4: mean ± std over seeds ({', '.join(map(str, all_seeds))})",
                  "", header, rule]  # fmt: skip
        for e in experiments:
            ref = paper.get(e, {})
            cells = [_pm(agg["values"][e][k]) + (f" ({ref[k]})" if k in ref else "") for k, *_ in COLUMNS]
            label = f"{e} (upper bound)" if e == UPPER_BOUND else e
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        for name in extra:
            cells = [_pm(None if rows[name][k] is None else [rows[name][k]]) for k, *_ in COLUMNS]
            kind = "upper bound" if rows[name]["local_maps"] is None else "imported maps"
            lines.append(f"| {name} ({kind}) | " + " | ".join(cells) + " |")
        noise = {e: [rows[f"{e}-s{s}"]["local_maps_bootstrap"]["std"] for s in seeds[e]] for e in experiments
                 if all("local_maps_bootstrap" in rows[f"{e}-s{s}"] for s in seeds[e])}  # fmt: skip
        if noise:
            lines += ["", "Evaluation noise of Local.Maps (standard deviation of a bootstrap over the scored images, "
                      "mean over seeds; every seed is scored on the same images): "
                      + ", ".join(f"{e} {statistics.mean(v):.1f}" for e, v in noise.items()) + "."]  # fmt: skip
        if agg["pairs"]:
            lines += ["", "Paired differences (same seed, same data): mean [95% Student-t interval over the seeds] "
                      "(seeds where the first is better).", "", header, rule]  # fmt: skip
            for pair, comps in agg["pairs"].items():
                cells = [_paired_cell(comps.get(k)) for k, *_ in COLUMNS]
                lines.append(f"| {pair.replace('-', ' − ')} | " + " | ".join(cells) + " |")
            lines += ["", "Verdicts (a claim is supported when the 95% interval of the paired difference lies above 0,"
                      " contradicted when it lies below, not resolved when it contains 0):", ""]  # fmt: skip
            headers = {k: h for k, h, *_ in COLUMNS}
            for pair, comps in agg["pairs"].items():
                first, second = pair.split("-")
                lines += [f"- {verdict_sentence(first, second, comps[k], headers[k])}" for k in VERDICT_KEYS
                          if k in comps]  # fmt: skip
        if agg["ordering_holds_on_seeds"]:
            holds = agg["ordering_holds_on_seeds"]
            lines += ["", "CAM < SIPE < RPC (the paper's ordering) holds on: "
                      + "; ".join(f"{h} {holds[k]}/{holds['seeds']} seeds" for k, h, *_ in COLUMNS) + "."]  # fmt: skip
    if agg.get("deeplab"):
        lines += ["", "## DeepLab against its training masks and the upper bound (mean ± std over seeds)", "",
                  "DeepLab val next to the pseudo masks it was trained on (+denseCRF, 255 ignored, scored on the "
                  "maps' split) and to DeepLab trained on the true masks with the same seed (the upper bound). A "
                  "DeepLab that learns its masks ends near their quality; far below them, it is undertrained.", "",
                  "| | DeepLab val | its pseudo masks | DeepLab − pseudo masks | DeepLab − upper bound |",
                  "|---|---:|---:|---:|---:|"]  # fmt: skip
        for e, d in agg["deeplab"].items():
            lines.append(f"| {e} | {_pm(d['seg_val'])} | {_pm(d['pseudo_masks'])} | {_pm(d['seg_minus_pseudo'])} | "
                         f"{_pm(d['seg_minus_upper'])} |")  # fmt: skip
    if parts:
        lines += ["", "## Part-level evidence (synthetic benchmark, %; mean ± std over seeds)", "",
                  "Recall of the discriminative and sub-discriminative parts (pixels labelled with their object's "
                  "class) and the share of background pixels labelled foreground. Maps: own-background argmax; "
                  "pseudo masks: after the CRF (255 counts as not recalled).", "",
                  "| | " + " | ".join(f"maps: {h}" for _, h in PART_KEYS) + " | "
                  + " | ".join(f"pseudo masks: {h}" for _, h in PART_KEYS) + " | pseudo masks: sub-disc. 255 |",
                  "|---|" + "---:|" * 7]  # fmt: skip
        for e in parts:
            p = parts[e]
            cells = [_pm(p["maps"][k]) for k, _ in PART_KEYS] + [_pm(p["pseudo_masks"][k]) for k, _ in PART_KEYS]
            lines.append(f"| {e} | " + " | ".join(cells) + f" | {_pm(p['pseudo_masks']['uncertain_sub'])} |")
            if len(p["stage_maps"]) > 1:
                for i, st in enumerate(p["stage_maps"]):
                    cells = [_pm(st[k]) for k, _ in PART_KEYS] + ["", "", "", ""]
                    lines.append(f"| {e}, stage {i + 1} map | " + " | ".join(cells) + " |")
    lines += ["", "## Every run", "", header.replace("| |", "| run |", 1), rule]
    for name, row in rows.items():
        cells = ["-" if row[k] is None else f"{row[k]:.1f}" for k, *_ in COLUMNS]
        if row.get("irn_at_edge"):
            cells[1] += f" (t={row['irn_threshold']:.2f}, edge of the sweep)"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if any(row.get("provenance") for row in rows.values()):
        lines += ["", "## What produced these numbers", "",
                  "Per run, each stage's resolved precision and threads, the device and torch (numbers made with other "
                  "settings, e.g. another thread count, bf16 vs fp32 or a GPU, can legitimately differ).", "",
                  "| run | stages |", "|---|---|"]  # fmt: skip
        lines += [f"| {name} | {summary_line(row.get('provenance') or {})} |" for name, row in rows.items()]
    splits = sorted({r["local_maps_split"] for r in rows.values() if "local_maps_split" in r}) or ["-"]
    lines += [
        "",
        f"Conventions. Local.Maps: localisation maps on the split {', '.join(splits)}; own background channel = "
        "argmax including the map's background (SIPE, the paper's headline); IRN = constant background score, best "
        "threshold of the sweep 0.00-0.95 (a best at the edge of the sweep is flagged). +denseCRF: pseudo masks "
        "after the two-pass CRF, uncertain (255) pixels counted as background or left out (SIPE's eval_sem_seg "
        "leaves them out). DeepLab val: predictions on the validation split, whole image, without / with CRF "
        "post-processing. `ground_truth` = DeepLab trained on the ground-truth masks (upper bound, one run per "
        "seed); imported maps = "
        "another method's maps (config `imported_maps`) through the same CRF, DeepLab and scoring.",
    ]
    return lines


def plot_parts(parts: dict, path: str | os.PathLike) -> None:
    """Grouped bars: per experiment, the three part-level scores of its maps and of its pseudo masks."""
    from rpc.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    experiments = list(parts)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    width = 0.8 / len(experiments)
    for ax, kind, title in zip(axes, ("maps", "pseudo_masks"), ("localisation maps", "pseudo masks (CRF)"),
                               strict=True):  # fmt: skip
        for i, e in enumerate(experiments):
            means = [mean_std(parts[e][kind][k])[0] for k, _ in PART_KEYS]
            stds = [mean_std(parts[e][kind][k])[1] for k, _ in PART_KEYS]
            xs = [j + (i - (len(experiments) - 1) / 2) * width for j in range(len(PART_KEYS))]
            ax.bar(xs, means, width, yerr=stds, capsize=3, label=e)
        ax.set_xticks(range(len(PART_KEYS)), [h for _, h in PART_KEYS], fontsize=8)
        ax.set_title(title)
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("% of pixels")
    axes[1].legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def write_summary(seeds: dict[str, list[int]], files: DeclaredFiles, dataset_kind: str, md_path, json_path,
                  extra: list[str] = (), dataset_dir=None, plot_path=None) -> dict:  # fmt: skip
    """Summarise the runs ``<experiment>-s<seed>`` of every experiment and its seeds (``{experiment: seeds}``),
    plus the ``extra`` runs (e.g. ``ground_truth``), from the declared ``files``; write Markdown, JSON and
    (optionally) the part-level plot."""
    rows = {f"{e}-s{s}": run_row(files, f"{e}-s{s}", segmentation_only=not files.has(f"{e}-s{s}", "local_maps.json"))
            for e, ss in seeds.items() for s in ss}  # fmt: skip
    # runs without seeds: the ground-truth upper bound (DeepLab only) and imported maps (every column)
    rows.update({name: run_row(files, name, segmentation_only=not files.has(name, "local_maps.json"))
                 for name in extra})  # fmt: skip
    agg = aggregate(rows, seeds)
    parts = part_table(rows, seeds)
    paper = paper_reference(dataset_dir, dataset_kind)
    lines = _markdown(rows, seeds, list(extra), agg, parts, paper, dataset_kind)
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    slim = {name: {k: v for k, v in row.items() if k != "parts"} for name, row in rows.items()}
    write_json_atomic(json_path, {"dataset": dataset_kind, "seeds": seeds, "runs": slim, "aggregate": agg,
                                  "parts": parts, "paper": paper})  # fmt: skip
    if plot_path is not None:
        if parts is None:
            raise DataError(f"{plot_path}: no part-level scores to plot (parts.json is written on the synthetic data)")
        plot_parts(parts, plot_path)
    return {"runs": rows, "aggregate": agg, "parts": parts}


def write_run_summary(run: str, files: DeclaredFiles, dataset_kind: str, md_path, json_path) -> dict:
    """The one-run summary (``results/<run>/summary.md``): its row of every column."""
    row = run_row(files, run, segmentation_only=not files.has(run, "local_maps.json"))
    lines = _markdown({run: row}, {}, [], {}, None, {}, dataset_kind)
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    write_json_atomic(json_path, {"dataset": dataset_kind, "run": run,
                                  "scores": {k: v for k, v in row.items() if k != "parts"}})  # fmt: skip
    return row
