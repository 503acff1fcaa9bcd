"""How close the embedded demo's model stages run to this CPU's convolution rate, on the one thread each model job
of ``make run`` gets on 2 cores. Per preset (ResNet-18, random weights): the classifier's training step (the
workflow's own calibration step: 8 random 128 px crops, forward + backward, bf16 + channels-last) and the maps
(``make_rs_cams`` as the workflow runs it: the demo's synthetic 128 px images, 4 scales + flip, stage maps saved,
bf16, BN folded), with their FLOPs counted by torch, beside a ResNet-sized bf16 3x3 convolution and a bf16 matrix
multiply on the same thread.

    python -m benchmarks.studies.demo_rates [--images 96] [--presets rpc sipe cam] [--batch-sizes 8 32] [--repeats 2]
        ->  benchmarks/out/demo_rates.json
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.cams import conv_gflops, flops_per_image, matmul_gflops
from benchmarks.common import median_time, write_result
from rpc.cams.generate import make_rs_cams
from rpc.data.synthetic import SyntheticSpec, generate_dataset
from rpc.data.voc import prepare_voc
from rpc.engine.train import TrainConfig, calibration_step
from rpc.models.checkpoint import save_model
from rpc.models.rpc import RPCModel, config_to_dict, make_config


def classifier_step_rate(model: RPCModel, repeats: int) -> dict:
    """FLOPs (counted in fp32: the same operations) and the median time of the bf16 + channels-last step."""
    cpu = torch.device("cpu")
    step = calibration_step(model, TrainConfig(batch_size=8, crop=128), cpu, world=1)
    with FlopCounterMode(display=False) as counter:
        step(False, False)
    gflop = counter.get_total_flops() / 1e9
    t, runs = median_time(lambda: step(True, True), repeats, warmup=1)
    return {"gflop": gflop, "s": t, "gflop_s": gflop / t, "runs_s": runs}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=96, help="synthetic training images the maps are timed on")
    ap.add_argument("--presets", nargs="+", default=["rpc", "sipe", "cam"], choices=["rpc", "sipe", "cam"])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32], help="images per maps forward pass")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (make run's model jobs: 1 on 2 cores)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    work = Path(tempfile.mkdtemp(prefix="rpc_bench_demo_"))
    try:
        raw = generate_dataset(SyntheticSpec(n_train=a.images, n_train_eval=8, n_val=8), work / "raw")
        index = prepare_voc(raw, work / "prepared", name="synthetic")
        names = index.names("train_aug")
        conv = conv_gflops(torch.bfloat16)
        result = {"threads": a.threads, "images": len(names), "image_size": 128,
                  "conv3x3_bf16_gflop_s": conv, "matmul_bf16_gflop_s": matmul_gflops(2048, torch.bfloat16),
                  "presets": {}}  # fmt: skip
        for preset in a.presets:
            cfg = make_config(preset, depth=18, weights="none", num_classes=index.num_classes - 1)
            torch.manual_seed(0)
            model = RPCModel(cfg)
            save_model(work / "model.pt", model, config_to_dict(cfg), list(index.classes), {})
            step = classifier_step_rate(model, a.repeats + 1)
            step["of_conv3x3"] = step["gflop_s"] / conv
            gflop = sum(flops_per_image(model.eval(), index, n) for n in names[:4]) / 4 / 1e9
            maps = {"gflop_per_image": gflop}
            for bs in a.batch_sizes:

                def run(bs=bs):
                    shutil.rmtree(work / "maps", ignore_errors=True)
                    make_rs_cams(work / "model.pt", index.root, "train_aug", work / "maps", amp="bf16",
                                 batch_size=bs, save_stages=True)  # fmt: skip

                t, runs = median_time(run, a.repeats, warmup=0)
                rate = gflop * len(names) / t
                maps[f"batch {bs}"] = {"s_per_image": t / len(names), "gflop_s": rate, "of_conv3x3": rate / conv,
                                       "runs_s": runs}  # fmt: skip
            result["presets"][preset] = {"classifier_step": step, "maps": maps}
            print(preset, result["presets"][preset], flush=True)
        write_result("demo_rates", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
