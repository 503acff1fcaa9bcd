"""Classifier training speed per preset (default: ResNet-18, 128 px crops, batch 8, synthetic images), fp32 and
bf16 + channels-last; the median over repeats of images/s after one warm-up run.

    python -m benchmarks.train [--steps 12] [--repeats 3] [--depth 18]   ->  benchmarks/out/train_r18.json
    python -m benchmarks.train --dataset voc --depth 50 --crop 512 --batch-size 16 --workers 8   (a GPU machine)

With ``--dataset voc`` the images are the real VOC samples (about 500x375, resized to the paper's long side
320-640); the result also projects the paper's full VOC schedule (5 epochs of 10,582 images) from images/s.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from benchmarks.common import voc_sized_dataset, write_result
from rpc.data.synthetic import SyntheticSpec, generate_dataset
from rpc.data.voc import prepare_voc
from rpc.engine.train import TrainConfig, train_classifier
from rpc.models.rpc import make_config


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--depth", type=int, default=18)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--dataset", choices=["synthetic", "voc"], default="synthetic")
    ap.add_argument("--workers", type=int, default=1, help="data-loading processes")
    ap.add_argument("--presets", nargs="+", default=["cam", "sipe", "rpc"])
    ap.add_argument("--amps", nargs="+", default=["none", "bf16"])
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rpc_bench_train_"))
    try:
        n_images = a.batch_size * a.steps
        if a.dataset == "voc":
            index, split, long_side = voc_sized_dataset(work, -(-n_images // 10)), "train", (320, 640)
        else:
            raw = generate_dataset(SyntheticSpec(n_train=n_images, n_train_eval=8, n_val=8), work / "raw")
            index, split = prepare_voc(raw, work / "prepared", name="synthetic"), "train_aug"
            long_side = (a.crop, a.crop + 32)
        result = {"depth": a.depth, "crop": a.crop, "batch_size": a.batch_size, "steps": a.steps,
                  "dataset": a.dataset, "workers": a.workers, "presets": {}}  # fmt: skip
        for preset in a.presets:
            for amp in a.amps:
                cfg = TrainConfig(split=split, batch_size=a.batch_size, epochs=1, crop=a.crop,
                                  long_side=long_side, num_workers=a.workers, log_interval=1000,
                                  checkpoint_interval=1000, amp=amp)  # fmt: skip
                model = make_config(preset, depth=a.depth, weights="none")
                rates = []
                for r in range(a.repeats + 1):
                    shutil.rmtree(work / "w", ignore_errors=True)
                    out = train_classifier(index.root, work / "w", work / "m.pt", model, cfg)
                    if r:  # the first run warms up
                        rates.append(out["images_per_s"])
                rate = statistics.median(rates)
                result["presets"].setdefault(preset, {})[amp] = {
                    "images_per_s": rate, "runs": rates,
                    "full_voc_minutes": round(5 * 10582 / rate / 60, 1),  # the paper's schedule at this speed
                }  # fmt: skip
        write_result(f"train_r{a.depth}", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
