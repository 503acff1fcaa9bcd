"""The summary table: measured numbers next to the paper's, with the evaluation convention of each."""

from __future__ import annotations

import json
import os

from rpc.utils.io import write_json_atomic, write_text_atomic

# Paper Table 1 / Table 4 (ResNet-50, VOC 2012 train, Local.Maps mIoU %)
PAPER_LOCAL_MAPS = {"cam": 50.1, "sipe": 58.6, "rpc": 60.5}


def write_summary(experiments: list[str], local_maps: list[str | os.PathLike], md_path, json_path) -> dict:
    rows = {}
    for name, path in zip(experiments, local_maps, strict=True):
        with open(path) as f:
            res = json.load(f)
        rows[name] = {
            "local_maps_sipe": 100 * res["sipe"]["miou"],
            "local_maps_irn": 100 * res["irn"]["best_miou"],
            "irn_threshold": res["irn"]["best_threshold"],
            "split": res["split"],
            "images": res["images"],
        }
    lines = [
        "# Summary",
        "",
        "Local.Maps: mIoU (%) of the localisation maps on the listed split; own background channel (SIPE",
        "convention, headline) and constant background threshold (IRN convention, best of 0.00-0.60).",
        "Paper: ResNet-50 on VOC 2012 train (Tables 1, 4); ours: the configured dataset and backbone.",
        "",
        "| experiment | split (images) | Local.Maps (own bg) | Local.Maps (IRN, t) | paper Local.Maps |",
        "|---|---|---:|---:|---:|",
    ]
    for name, r in rows.items():
        paper = PAPER_LOCAL_MAPS.get(name)
        lines.append(
            f"| {name} | {r['split']} ({r['images']}) | {r['local_maps_sipe']:.1f} | "
            f"{r['local_maps_irn']:.1f} (t={r['irn_threshold']:.2f}) | {'' if paper is None else paper} |"
        )
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    write_json_atomic(json_path, {"experiments": rows, "paper_local_maps": PAPER_LOCAL_MAPS})
    return rows
