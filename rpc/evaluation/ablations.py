"""Ablation tables in the paper's shape: our Local.Maps mIoU next to the paper's, and whether orderings agree.

The spec (``config/ablations.yaml``) lists cells (a preset + overrides, trained once per seed: the spec's
``seeds``, or the cell's own) and tables; each row averages its cells over all their seeds. Each run's
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
    return {"values": own, "mean": statistics.mean(own), "std": statistics.stdev(own) if len(own) > 1 else 0.0,
            "irn_mean": statistics.mean(irn), "empty_mean": statistics.mean(empty)}  # fmt: skip


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
        "Local.Maps mIoU (%) with the own background channel (SIPE convention); IRN convention (best",
        "constant threshold) in the next column; then the share of present classes whose final map is zero",
        "everywhere (no seeds, so an empty prototype); the paper's value (ResNet-50, VOC train) last.",
        "",
    ]
    for table in spec["tables"]:
        rows = []
        for row in table["rows"]:
            runs = [r for c in row["cells"] for r in cell_runs(spec, c)]
            rows.append({"label": row["label"], "cells": row["cells"], "runs": runs, "paper": row.get("paper"),
                         **_row_result(files, runs)})  # fmt: skip
        ours_best, paper_best = _best(rows, lambda r: r["mean"]), _best(rows, lambda r: r["paper"])
        out.append({"title": table["title"], "rows": rows, "ours_best": ours_best, "paper_best": paper_best})
        lines += [f"## {table['title']}", ""]
        if table.get("note"):
            lines += [table["note"], ""]
        lines += ["| | ours (own bg), mean ± std | per seed | ours (IRN) | empty fg maps (%) | paper |",
                  "|---|---:|---|---:|---:|---:|"]  # fmt: skip
        for r in rows:
            seeds = ", ".join(f"{v:.1f}" for v in r["values"])
            paper = "" if r["paper"] is None else f"{r['paper']:.1f}"
            lines.append(f"| {r['label']} | {r['mean']:.1f} ± {r['std']:.1f} | {seeds} | {r['irn_mean']:.1f} "
                         f"| {r['empty_mean']:.1f} | {paper} |")  # fmt: skip
        if paper_best:
            verdict = "agrees" if ours_best == paper_best else "differs"
            lines += ["", f"Best row: ours {ours_best!r}, paper {paper_best!r} ({verdict})."]
        lines.append("")
    write_text_atomic(md_path, "\n".join(lines))
    write_json_atomic(json_path, {"tables": out})
    return out
