"""Ablation tables in the paper's shape: our Local.Maps mIoU next to the paper's, and whether orderings agree.

The spec (``config/ablations.yaml``) lists cells (a preset + overrides, trained once per seed: the spec's
``seeds``, or the cell's own) and tables; each row averages its cells over all their seeds, with the 95 % Student-t
interval of that mean. A table may name a ``reference`` row: every other row of one cell is then compared with it
on the seeds both share (paired differences, 95 % interval, verdict: ``rpc.evaluation.uncertainty``). Each run's
``results/<cell>-s<seed>/local_maps.json`` (written by ``eval-cams``, declared as the rule's input) gives its mIoU
(own background channel, SIPE convention) and the IRN-convention best. A file not declared or missing is an error.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import yaml

from rpc.evaluation.declared import DeclaredFiles
from rpc.evaluation.uncertainty import paired_comparison, t_interval
from rpc.utils.io import DataError, write_json_atomic, write_text_atomic


def load_spec(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
        cells, tables = spec["cells"], spec["tables"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not an ablation spec with 'cells' and 'tables' ({exc})") from exc
    for table in tables:
        for row in table["rows"]:
            unknown = [c for c in row["cells"] if c not in cells]
            if unknown:
                raise DataError(f"{path}: row {row['label']!r} names unknown cells {unknown}")
        labels = [row["label"] for row in table["rows"]]
        ref = table.get("reference")
        if ref is not None and (ref not in labels or len(table["rows"][labels.index(ref)]["cells"]) != 1):
            raise DataError(f"{path}: table {table['title']!r}: reference {ref!r} is not one of its one-cell rows")
    return spec


def cell_runs(spec: dict, cell: str) -> list[str]:
    """The run names of a cell: ``<cell>-s<seed>`` for each of its seeds."""
    return [f"{cell}-s{seed}" for seed in spec["cells"][cell].get("seeds", spec.get("seeds", [15]))]


def _row_result(files: DeclaredFiles, runs: list[str]) -> dict:
    own, irn, empty = [], [], []
    for run in runs:
        res = json.loads(files.path(run, "local_maps.json").read_text())
        own.append(100 * res["sipe"]["miou"])
        irn.append(100 * res["irn"]["best_miou"])
        empty.append(100 * res.get("empty_foreground_maps", {}).get("final", float("nan")))
    interval = t_interval(own)
    return {"values": own, "mean": statistics.mean(own), "std": statistics.stdev(own) if len(own) > 1 else 0.0,
            "low": interval["low"], "high": interval["high"],
            "irn_mean": statistics.mean(irn), "empty_mean": statistics.mean(empty)}  # fmt: skip


def _versus(row: dict, ref: dict) -> dict | None:
    """Paired comparison of a one-cell row with the reference row on the seeds both have (None if they share
    fewer than two)."""
    if len(row["cells"]) != 1 or row is ref:
        return None
    mine = {r.rsplit("-s", 1)[1]: v for r, v in zip(row["runs"], row["values"], strict=True)}
    theirs = {r.rsplit("-s", 1)[1]: v for r, v in zip(ref["runs"], ref["values"], strict=True)}
    shared = [s for s in mine if s in theirs]
    if len(shared) < 2:
        return None
    return paired_comparison([mine[s] for s in shared], [theirs[s] for s in shared])


def _best(rows: list[dict], key) -> str | None:
    scored = [r for r in rows if key(r) is not None]
    return max(scored, key=key)["label"] if scored else None


def write_ablation_tables(spec_path, files: DeclaredFiles, md_path, json_path) -> list[dict]:
    """The tables of the spec from the declared ``local_maps.json`` of its runs."""
    spec = load_spec(spec_path)
    out = []
    lines = [
        "# Ablations on the synthetic benchmark",
        "",
        "Local.Maps mIoU (%) with the own background channel (SIPE convention): mean ± std over the seeds and the",
        "95% Student-t interval of the mean; where a table has a reference row, each row's paired difference from it",
        "(same seeds) with its 95% interval, the seeds where the row is better and the verdict; IRN convention (best",
        "constant threshold); the share of present classes whose final map is zero everywhere (no seeds, so an",
        "empty prototype); the paper's value (ResNet-50, VOC train) last.",
        "",
    ]
    for table in spec["tables"]:
        rows = []
        for row in table["rows"]:
            runs = [r for c in row["cells"] for r in cell_runs(spec, c)]
            rows.append({"label": row["label"], "cells": row["cells"], "runs": runs, "paper": row.get("paper"),
                         **_row_result(files, runs)})  # fmt: skip
        ref = next((r for r in rows if r["label"] == table.get("reference")), None)
        for r in rows:
            r["versus_reference"] = _versus(r, ref) if ref is not None else None
        ours_best, paper_best = _best(rows, lambda r: r["mean"]), _best(rows, lambda r: r["paper"])
        out.append({"title": table["title"], "rows": rows, "ours_best": ours_best, "paper_best": paper_best,
                    "reference": table.get("reference")})  # fmt: skip
        lines += [f"## {table['title']}", ""]
        if table.get("note"):
            lines += [table["note"], ""]
        vs = f"vs {ref['label']}" if ref is not None else "vs reference"
        lines += [f"| | ours (own bg), mean ± std | 95% interval | per seed | {vs} | ours (IRN) | empty fg maps (%) "
                  "| paper |", "|---|---:|---:|---|---|---:|---:|---:|"]  # fmt: skip
        for r in rows:
            seeds = ", ".join(f"{v:.1f}" for v in r["values"])
            paper = "" if r["paper"] is None else f"{r['paper']:.1f}"
            interval = f"{r['low']:.1f}-{r['high']:.1f}" if len(r["values"]) > 1 else "-"
            c = r["versus_reference"]
            versus = "" if c is None else (f"{c['mean']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}] "
                                           f"({c['positive']}/{c['n']}) {c['verdict']}")  # fmt: skip
            lines.append(f"| {r['label']} | {r['mean']:.1f} ± {r['std']:.1f} | {interval} | {seeds} | {versus} "
                         f"| {r['irn_mean']:.1f} | {r['empty_mean']:.1f} | {paper} |")  # fmt: skip
        if paper_best:
            verdict = "agrees" if ours_best == paper_best else "differs"
            lines += ["", f"Best row: ours {ours_best!r}, paper {paper_best!r} ({verdict})."]
        lines.append("")
    write_text_atomic(md_path, "\n".join(lines))
    write_json_atomic(json_path, {"tables": out})
    return out
