"""Classifier training speed per preset on the synthetic data (ResNet-18, 128 px crops, batch 8), fp32 and
bf16 + channels-last; the median over repeats of images/s after one warm-up run.

    python -m benchmarks.train [--steps 12] [--repeats 3] [--depth 18]   ->  benchmarks/out/train_r18.json
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from benchmarks.common import write_result
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
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rpc_bench_train_"))
    try:
        raw = generate_dataset(SyntheticSpec(n_train=a.batch_size * a.steps, n_train_eval=8, n_val=8), work / "raw")
        index = prepare_voc(raw, work / "prepared", name="synthetic")
        result = {"depth": a.depth, "crop": a.crop, "batch_size": a.batch_size, "steps": a.steps, "presets": {}}
        for preset in ("cam", "sipe", "rpc"):
            for amp in ("none", "bf16"):
                cfg = TrainConfig(batch_size=a.batch_size, epochs=1, crop=a.crop, long_side=(a.crop, a.crop + 32),
                                  num_workers=1, log_interval=1000, checkpoint_interval=1000, amp=amp)  # fmt: skip
                model = make_config(preset, depth=a.depth, weights="none")
                rates = []
                for r in range(a.repeats + 1):
                    shutil.rmtree(work / "w", ignore_errors=True)
                    out = train_classifier(index.root, work / "w", work / "m.pt", model, cfg)
                    if r:  # the first run warms up
                        rates.append(out["images_per_s"])
                result["presets"].setdefault(preset, {})[amp] = {"images_per_s": statistics.median(rates),
                                                                  "runs": rates}  # fmt: skip
        write_result(f"train_r{a.depth}", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
