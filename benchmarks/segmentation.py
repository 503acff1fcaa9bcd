"""DeepLabv2 training speed with mmseg: seconds per iteration from the wall time of two runs of different
length (the difference removes start-up), on the synthetic data or VOC-sized images; then the prediction speed
of the last model trained (``predict_segmentation`` with its CRF, as the workflow runs it: one scale, no flip,
fp32), from the wall times over all the images and over half of them, after one untimed pass.

    python -m benchmarks.segmentation [--config ...] [--iters 10 30] [--dataset voc] [--amps none bf16]
                                      [--crf-workers 1]
        ->  benchmarks/out/segmentation_<config name>.json   (one entry per precision, and "predict")
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import voc_sized_dataset, write_result
from rpc.data.synthetic import SyntheticSpec, generate_dataset
from rpc.data.voc import prepare_voc
from rpc.utils.shard import shard


def logged_iteration_times(work: Path) -> list[float]:
    """``time`` of every logged training iteration in mmengine's ``vis_data/scalars.json`` under ``work``."""
    times = []
    for path in sorted(work.glob("*/vis_data/scalars.json")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if "time" in record and "loss" in record:
                times.append(float(record["time"]))
    return times


def _train_speed(a, index, split: str, work: Path, opts: list[str], amp: str) -> dict:
    # mmseg imported here, not at the top: the predictions' CRF workers, spawned, import this module again
    from rpc.segmentation.train import train_segmentation

    walls = []
    for n in a.iters:
        shutil.rmtree(work / "w", ignore_errors=True)
        t0 = time.perf_counter()
        train_segmentation(a.config, index.root, split, mask_dir=None, work_dir=work / "w", out=work / "m.pt",
                           options=[*opts, f"train_cfg.max_iters={n}", f"param_scheduler.0.end={n}"],
                           amp=amp)  # fmt: skip
        walls.append(time.perf_counter() - t0)
    s_per_iter = (walls[1] - walls[0]) / (a.iters[1] - a.iters[0])
    logged = logged_iteration_times(work / "w")
    return {
        "wall_s": walls, "s_per_iteration": s_per_iter, "iterations_per_s": 1 / s_per_iter,
        # mmengine's own per-iteration time (data + forward + backward + step), the first logged one dropped
        "logged_s_per_iteration_median": statistics.median(logged[1:]) if len(logged) > 1 else None,
    }  # fmt: skip


def _predict_speed(index, split: str, work: Path, crf_workers: int) -> dict:
    """Predictions with their CRF, as the workflow's rule runs them (the CRF in ``crf_workers`` processes):
    seconds per image from all images against half of them (shard 0 of 2), after one untimed pass. ``reload_s``,
    the rest of a pass, is a warm reload of the model in this process and the start of the CRF workers, not a new
    job's start-up."""
    from rpc.segmentation.predict import predict_segmentation

    n, half = len(index.names(split)), len(shard(index.names(split), 0, 2))
    walls = {}
    for shards in (1, 1, 2):  # a warm-up pass (cuDNN autotuning, allocator), then all images and half of them
        for d in ("pred", "crf"):
            shutil.rmtree(work / d, ignore_errors=True)
        t0 = time.perf_counter()
        result = predict_segmentation(work / "m.pt", index.root, split, work / "pred", crf_dir=work / "crf",
                                      num_shards=shards, crf_workers=crf_workers)  # fmt: skip
        walls[shards] = time.perf_counter() - t0
    s_per_image = (walls[1] - walls[2]) / (n - half)
    if s_per_image <= 0:
        raise SystemExit(f"predictions: {n} images took {walls[1]:.2f} s, {half} took {walls[2]:.2f} s; too few "
                         "images to tell the time per image from the noise")  # fmt: skip
    return {"images": n, "crf_workers": crf_workers, "wall_s": {"all": walls[1], "half": walls[2]},
            "s_per_image": s_per_image, "crf_s_per_image": result["crf_s"] / half,
            "reload_s": walls[1] - n * s_per_image}  # fmt: skip


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="config/mmseg/deeplabv2_r18-d8_1xb8-5ep_synthetic-128x128.py")
    ap.add_argument("--iters", type=int, nargs=2, default=[10, 30])
    ap.add_argument("--dataset", choices=["synthetic", "voc"], default="synthetic")
    ap.add_argument("--options", nargs="*", default=[], help="extra mmengine overrides")
    ap.add_argument("--amps", nargs="+", default=["none", "bf16"],
                    help="precisions to time (seg-train --amp; on a GPU bf16 is mmengine's AmpOptimWrapper)")
    ap.add_argument("--crf-workers", type=int, default=1, help="the predictions' CRF processes (seg-predict's)")
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rpc_bench_seg_"))
    try:
        if a.dataset == "voc":
            index, split = voc_sized_dataset(work, 4), "train"
        else:
            raw = generate_dataset(SyntheticSpec(n_train=64, n_train_eval=8, n_val=8), work / "raw")
            index, split = prepare_voc(raw, work / "prepared", name="synthetic"), "train_aug"
        opts = [f"model.decode_head.num_classes={index.num_classes}", "train_dataloader.persistent_workers=False",
                *a.options]  # fmt: skip
        results, failed = {}, []
        for amp in a.amps:
            try:
                results[amp] = _train_speed(a, index, split, work, opts, amp)
            except Exception as exc:  # a precision that fails (a first run on new hardware) keeps the others'
                results[amp] = {"error": f"{type(exc).__name__}: {exc}"}
                failed.append(amp)
            print(amp, results[amp])
        predict = _predict_speed(index, split, work, a.crf_workers) if (work / "m.pt").is_file() else None
        print("predict", predict)
        write_result(f"segmentation_{Path(a.config).stem}",
                     {"config": a.config, "dataset": a.dataset, "iters": a.iters, "amp": results,
                      "predict": predict})  # fmt: skip
        if failed:
            raise SystemExit(f"DeepLab training failed in {', '.join(failed)} (the errors are in the result)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
