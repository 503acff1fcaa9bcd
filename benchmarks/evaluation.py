"""Mask evaluation speed and peak memory for 1k and 10k VOC-sized masks (memory must not grow with the count).

Each count runs in a fresh process that reports its own peak RSS. The masks are hard links to the 10 real VOC
ground-truth masks (predictions: the same masks shifted by 8 pixels), so disk use stays small.

    python -m benchmarks.evaluation [--counts 1000 10000]   ->  benchmarks/out/evaluation.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import REALDATA, write_result
from rpc.data.index import write_prepared
from rpc.data.palette import read_mask, write_mask
from rpc.data.voc import VOC_CLASSES

CHILD = """
import json, resource, sys, time
from rpc.data.index import DatasetIndex
from rpc.evaluation.masks import evaluate_mask_dir
index = DatasetIndex.load(sys.argv[1])
t0 = time.perf_counter()
res = evaluate_mask_dir(index, "bench", sys.argv[2])
wall = time.perf_counter() - t0
print(json.dumps({"images": res["images"], "miou": res["miou"], "wall_s": wall,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build(work: Path, count: int):
    src = REALDATA / "voc" / "VOCdevkit" / "VOC2012" / "SegmentationClass"
    masks = sorted(src.glob("*.png"))
    gt_dir, pred_dir = work / f"gt{count}", work / f"pred{count}"
    gt_dir.mkdir(), pred_dir.mkdir()
    shifted = []
    for m in masks:
        shifted_path = work / f"shifted_{m.name}"
        write_mask(shifted_path, np.roll(read_mask(m), 8, axis=1))
        shifted.append(shifted_path)
    names, labels = [], {}
    for i in range(count):
        name = f"m{i:05d}"
        os.link(masks[i % len(masks)], gt_dir / f"{name}.png")
        os.link(shifted[i % len(masks)], pred_dir / f"{name}.png")
        names.append(name)
        labels[name] = []
    write_prepared(work / f"prep{count}", "bench", list(VOC_CLASSES), [gt_dir], ".jpg", [gt_dir],
                   {"bench": names}, labels)  # fmt: skip
    return work / f"prep{count}", pred_dir


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rpc_bench_eval_"))
    try:
        runs = {}
        for count in a.counts:
            prep, pred = build(work, count)
            out = subprocess.run([sys.executable, "-c", CHILD, str(prep), str(pred)], capture_output=True, text=True,
                                 check=True).stdout  # fmt: skip
            r = json.loads(out.strip().splitlines()[-1])
            r["images_per_s"] = r["images"] / r["wall_s"]
            runs[str(count)] = r
        write_result("evaluation", {"runs": runs})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
