"""RS-CAM inference speed: ResNet-50 RPC (2 stages + SFA), 4 scales + flip, VOC-sized images, on this machine,
fp32 and bf16 autocast, in the layout the workflow picks; achieved GFLOP/s next to a large matrix multiply's and a
ResNet-sized 3x3 convolution's GFLOP/s on the same device.

    python -m benchmarks.cams [--images 4] [--copies 1] [--repeats 2] [--depth 50] [--modes fp32 bf16]
                              [--workers auto ...] [--fold-bn on off] [--pyramid host device] [--save-stages]
                              ->  benchmarks/out/cams_r<depth>.json

Each mode (and each ``--workers`` value: data-loading processes, a number or ``auto`` as in
``rpc.cams.generate.loader_workers``) is run once untimed, then timed ``--repeats`` times (median).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import median_time, voc_sized_dataset, write_result
from rpc.cams.generate import DEFAULT_SCALES, make_rs_cams
from rpc.data.datasets import MultiScaleInferenceSet
from rpc.models.checkpoint import save_model
from rpc.models.rpc import RPCModel, config_to_dict, make_config


def matmul_gflops(n: int = 4096, dtype=torch.float32, repeats: int = 5) -> float:
    """A large matrix multiply's GFLOP/s on the device the maps run on (the practical compute limit)."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    a, b = torch.randn(n, n, dtype=dtype, device=dev), torch.randn(n, n, dtype=dtype, device=dev)

    def mm():
        a @ b
        if dev == "cuda":
            torch.cuda.synchronize()

    mm()
    t, _ = median_time(mm, repeats)
    return 2 * n**3 / t / 1e9


@torch.inference_mode()
def conv_gflops(dtype=torch.float32, batch: int = 8, channels: int = 256, side: int = 56, repeats: int = 5) -> float:
    """A ResNet-sized 3x3 convolution's GFLOP/s in channels-last (a second limit beside the matrix multiply: on the
    CPU convolutions run in oneDNN, the fp32 matrix multiply in another library, which on some CPUs is far slower)."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    conv = conv.to(dev, dtype, memory_format=torch.channels_last)
    x = torch.randn(batch, channels, side, side, device=dev, dtype=dtype).to(memory_format=torch.channels_last)

    def run():
        conv(x)
        if dev == "cuda":
            torch.cuda.synchronize()

    t, _ = median_time(run, repeats, warmup=1)
    return 2 * batch * channels * channels * 9 * side * side / t / 1e9


def mode_key(mode: str, workers: str | None = None, fold: str | None = None, pyramid: str | None = None) -> str:
    """A result's key: the precision (``fp32`` | ``bf16``), then each option the run varied (None: not varied),
    e.g. ``"bf16_channels_last, BN folded on, pyramid on the device"``."""
    key = {"fp32": "fp32", "bf16": "bf16_channels_last"}[mode]
    key += f", {workers} workers" if workers is not None else ""
    key += f", BN folded {fold}" if fold is not None else ""
    return key + (f", pyramid on the {pyramid}" if pyramid is not None else "")


@torch.inference_mode()
def flops_per_image(model, index, name: str) -> float:
    """FLOPs of the model's forward passes for one image at every scale (image + flip), counted by torch (on the
    model's device)."""
    item = MultiScaleInferenceSet(index, [name], DEFAULT_SCALES)[0]
    dev = next(model.parameters()).device
    with FlopCounterMode(display=False) as counter:
        for x in item["scales"]:
            model.maps(x.to(dev), item["label"][None].to(dev))
    return float(counter.get_total_flops())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--copies", type=int, default=1, help="each real VOC image this many times")
    ap.add_argument("--modes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    ap.add_argument("--workers", nargs="+", default=["auto"],
                    help="data-loading processes (numbers or auto, the default: as the workflow)")  # fmt: skip
    ap.add_argument("--fold-bn", nargs="+", choices=["on", "off"], default=["on"],
                    help="batch norm folded into the convolutions (rpc.models.fold), or not; both: side by side")
    ap.add_argument("--pyramid", nargs="+", choices=["host", "device"], default=None,
                    help="where the scales and flips are built (default: as the workflow does)")  # fmt: skip
    ap.add_argument("--save-stages", action="store_true", help="also write each stage's maps, as the workflow does")
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rpc_bench_cams_"))
    try:
        index = voc_sized_dataset(work, a.copies, limit=a.images)
        names = index.names("train")
        cfg = make_config("rpc", depth=a.depth, weights="none", num_classes=index.num_classes - 1)
        torch.manual_seed(0)
        model = RPCModel(cfg).eval()
        save_model(work / "model.pt", model, config_to_dict(cfg), list(index.classes), {})
        counted = model.to("cuda") if torch.cuda.is_available() else model
        flops = sum(flops_per_image(counted, index, n) for n in names) / len(names)
        result = {"depth": a.depth, "images": len(names), "scales": list(DEFAULT_SCALES), "repeats": a.repeats,
                  "save_stages": a.save_stages, "gflop_per_image": flops / 1e9, "modes": {}}  # fmt: skip
        pyramids = a.pyramid or ["auto"]
        runs = [(m, w, f, p) for m in a.modes for w in a.workers for f in a.fold_bn for p in pyramids]
        for mode, workers, fold, pyramid in runs:

            def run(amp={"fp32": "none", "bf16": "bf16"}[mode], workers=workers, fold=fold == "on", pyramid=pyramid):
                shutil.rmtree(work / "maps", ignore_errors=True)
                make_rs_cams(work / "model.pt", index.root, "train", work / "maps", amp=amp, num_workers=workers,
                             fold_bn=fold, pyramid=pyramid, save_stages=a.save_stages)  # fmt: skip

            t, runs = median_time(run, a.repeats, warmup=1)
            key = mode_key(mode, workers if len(a.workers) > 1 else None, fold if len(a.fold_bn) > 1 else None,
                           pyramid if len(pyramids) > 1 else None)  # fmt: skip
            result["modes"][key] = {"s_per_image": t / len(names), "images_per_s": len(names) / t,
                                    "achieved_gflop_s": flops * len(names) / t / 1e9, "runs_s": runs}  # fmt: skip
        result["matmul_gflop_s"] = {"fp32": matmul_gflops(), "bf16": matmul_gflops(dtype=torch.bfloat16)}
        result["conv3x3_gflop_s"] = {"fp32": conv_gflops(), "bf16": conv_gflops(torch.bfloat16)}
        write_result(f"cams_r{a.depth}", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
