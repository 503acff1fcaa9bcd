"""The summary table: measured numbers next to the paper's, with the evaluation convention of each.

One row per experiment, read from the experiment's result files (each optional, shown as "-" when absent):
``local_maps.json`` (eval-cams), ``pseudo_masks.json`` / ``pseudo_masks_ignore.json`` (eval-masks with 255 as
background / ignored), ``segmentation/val.json`` / ``segmentation/val_crf.json`` (eval-masks of predictions).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rpc.utils.io import write_json_atomic, write_text_atomic

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


def experiment_row(result_dir: str | os.PathLike) -> dict:
    """``{column key: mIoU % or None}`` plus ``uncertain_fraction`` and ``irn_threshold`` where known."""
    result_dir = Path(result_dir)
    row: dict = {}
    for key, _, file, read in COLUMNS:
        path = result_dir / file
        if path.is_file():
            res = json.loads(path.read_text())
            row[key] = 100 * read(res)
            if key == "crf":
                row["uncertain_fraction"] = res["uncertain_fraction"]
            if key == "local_maps":
                row["irn_threshold"] = res["irn"]["best_threshold"]
                row["local_maps_split"] = f"{res['split']} ({res['images']})"
        else:
            row[key] = None
    return row


def _cell(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def write_summary(experiments: list[str], results_root, dataset_kind: str, md_path, json_path) -> dict:
    """Write the Markdown + JSON summary of ``results_root/<experiment>/`` for every experiment."""
    rows = {name: experiment_row(Path(results_root) / name) for name in experiments}
    paper = PAPER.get(dataset_kind, {})
    header = "| experiment | " + " | ".join(h for _, h, _, _ in COLUMNS) + " |"
    lines = [
        "# Summary",
        "",
        f"Dataset: {dataset_kind}. mIoU (%); paper values (VOC: Tables 1, 2, 4; COCO: Table 3) in parentheses.",
        "",
        header,
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for name, row in rows.items():
        ref = paper.get(name, {})
        cells = [_cell(row[k]) + (f" ({ref[k]})" if k in ref else "") for k, _, _, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Conventions. Local.Maps: localisation maps on the split "
        + ", ".join(sorted({r["local_maps_split"] for r in rows.values() if "local_maps_split" in r}) or ["-"])
        + "; own background channel = argmax including the map's background (SIPE, the paper's headline); IRN =",
        "constant background score, best threshold of 0.00-0.60. +denseCRF: pseudo masks after the two-pass CRF,",
        "uncertain (255) pixels counted as background (SIPE) or left out. DeepLab val: predictions on the",
        "validation split, whole image, without / with CRF post-processing. `ground_truth` = DeepLab trained on",
        "the ground-truth masks (upper bound).",
    ]
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    write_json_atomic(json_path, {"dataset": dataset_kind, "experiments": rows, "paper": paper})
    return rows
