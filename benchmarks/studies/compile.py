"""Does ``torch.compile`` (inductor, CPU) pay for the classifier and the maps? Eager against compiled on the
default workload (RPC ResNet-18, batch 8 at 128 px for training; the 4 scales + flip of a 128 px image for maps):
the one-off compile time and the steady-state seconds per step, and the break-even step count.

    python -m benchmarks.studies.compile [--steps 10] [--amp bf16|none]   ->  benchmarks/out/compile.json

The maps see 4 input shapes per image (one per scale), so the compiled model is specialised per shape (dynamic
shapes off) or compiled with dynamic shapes; both are timed.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import default_amp, median_time, write_result
from rpc.data.transforms import multiscale_flip
from rpc.models.rpc import RPCModel, make_config


def train_case(bf16: bool, compiled: bool, steps: int) -> dict:
    torch.manual_seed(0)
    model = RPCModel(make_config("rpc", depth=18, num_classes=6, weights="none")).train()
    fmt = torch.channels_last if bf16 else torch.contiguous_format
    model = model.to(memory_format=fmt)
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(8, 3, 128, 128).contiguous(memory_format=fmt)
    y = (torch.rand(8, 6) < 0.3).float()
    y[:, 0] = 1
    valid = torch.ones(8, 128, 128)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = forward(x, y, valid)
        loss = model.losses(out, y)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    return {"first_step_s": first, "step_s": median_time(step, steps)[0]}


def maps_case(bf16: bool, mode: str, images: int) -> dict:
    torch.manual_seed(0)
    model = RPCModel(make_config("rpc", depth=18, num_classes=6, weights="none")).eval()
    fmt = torch.channels_last if bf16 else torch.contiguous_format
    model = model.to(memory_format=fmt)
    maps = model.maps if mode == "eager" else torch.compile(model.maps, dynamic=mode == "dynamic")
    image = torch.randint(0, 256, (128, 128, 3), dtype=torch.uint8).numpy()
    pairs = [torch.from_numpy(p).contiguous(memory_format=fmt) for p in multiscale_flip(image, (1.0, 0.5, 1.5, 2.0))]
    labels = torch.zeros(1, 6)
    labels[0, :2] = 1

    @torch.inference_mode()
    def one_image():
        for x in pairs:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                maps(x, labels)

    t0 = time.perf_counter()
    one_image()
    first = time.perf_counter() - t0
    return {"first_image_s": first, "image_s": median_time(one_image, images)[0]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--amp", choices=["bf16", "none"], default=default_amp())
    a = ap.parse_args(argv)
    bf16 = a.amp == "bf16"
    out = {"amp": a.amp, "train": {}, "maps": {}}
    for compiled in (False, True):
        out["train"]["compiled" if compiled else "eager"] = r = train_case(bf16, compiled, a.steps)
        print("train", compiled, r, flush=True)
    for mode in ("eager", "static", "dynamic"):
        out["maps"][mode] = r = maps_case(bf16, mode, a.steps)
        print("maps", mode, r, flush=True)
    e, c = out["train"]["eager"], out["train"]["compiled"]
    gain = e["step_s"] - c["step_s"]
    out["train"]["break_even_steps"] = (c["first_step_s"] - e["first_step_s"]) / gain if gain > 0 else None
    write_result("compile", out)


if __name__ == "__main__":
    main()
