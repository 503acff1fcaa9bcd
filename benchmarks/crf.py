"""CRF pseudo-mask speed: the bare two-pass CRF on preloaded inputs in one process vs ``make_pseudo_masks`` with
each ``--workers`` count of worker processes (reading maps and images, encoding PNGs, scheduling) on VOC-sized
images.

    python -m benchmarks.crf [--copies 4] [--repeats 3] [--workers 1 2]    ->  benchmarks/out/crf.json
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from benchmarks.common import median_time, voc_sized_dataset, write_result
from rpc.crf.pseudo import confident_labels, make_pseudo_masks
from rpc.data.maps import save_cams


def blurred_gt_maps(index, name: str) -> tuple[np.ndarray, np.ndarray]:
    gt = index.read_mask(name)
    keys = np.array([0] + [int(i) + 1 for i in np.nonzero(index.label(name))[0]])
    maps = [np.asarray(Image.fromarray(((gt == k) * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(6)))
            for k in keys]  # fmt: skip
    return keys, np.stack(maps).astype(np.float32) / 255


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--copies", type=int, default=4, help="copies of the 10 real VOC images")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker processes of the pipeline runs")
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rpc_bench_crf_"))
    try:
        index = voc_sized_dataset(work, a.copies)
        names = index.names("train")
        inputs = []
        for name in names:
            keys, maps = blurred_gt_maps(index, name)
            save_cams(work / "maps" / f"{name}.npz", keys, maps)
            inputs.append((index.read_image(name), keys, maps.astype(np.float16).astype(np.float32)))

        def bare():
            for image, keys, maps in inputs:
                confident_labels(image, keys, maps)

        def pipeline(workers):
            def run():
                shutil.rmtree(work / "masks", ignore_errors=True)
                make_pseudo_masks(index.root, "train", work / "maps", work / "masks", workers=workers)

            return run

        bare_s, bare_all = median_time(bare, a.repeats)
        pipelines = {w: median_time(pipeline(w), a.repeats) for w in a.workers}
        n = len(names)
        sizes = sorted({tuple(x[0].shape[:2]) for x in inputs})
        write_result("crf", {
            "images": n, "image_sizes": [list(s) for s in sizes], "repeats": a.repeats,
            "bare_two_pass_s_per_image": bare_s / n,
            "pipeline_s_per_image": {f"{w} workers": t / n for w, (t, _) in pipelines.items()},
            "images_per_s": {"bare": n / bare_s, **{f"{w} workers": n / t for w, (t, _) in pipelines.items()}},
            "speedup_over_bare": {f"{w} workers": bare_s / t for w, (t, _) in pipelines.items()},
            "runs_s": {"bare": bare_all, **{f"{w} workers": runs for w, (_, runs) in pipelines.items()}},
        })  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
