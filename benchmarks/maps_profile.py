"""Where a map job's time goes: start-up (model construction and loading, the index), waiting for the loader, the
model's forward passes, the rest of each batch (copies to the device, upsampling, normalisation, copies back) and
writing the files. ResNet RPC, VOC images, bf16 on a GPU (fp32 on a CPU), stage maps on as in the workflow; a
GPU is synchronised around each timed part. Ends with torch.profiler's tables for one run.

    python -m benchmarks.maps_profile [--depth 50] [--images 4] [--copies 4] [--workers 0 4]
        ->  benchmarks/out/maps_profile_r<depth>.json
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

import rpc.cams.generate as generate
from benchmarks.common import voc_sized_dataset, write_result
from rpc.models.checkpoint import save_model
from rpc.models.rpc import RPCModel, config_to_dict, make_config

TIMES: dict[str, float] = {}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(key: str, fn):
    def wrapper(*args, **kwargs):
        _sync()
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        _sync()
        TIMES[key] = TIMES.get(key, 0.0) + time.perf_counter() - t0
        return out

    return wrapper


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--images", type=int, default=4, help="distinct real VOC images")
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--workers", nargs="+", default=["0", "4"])
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rpc_bench_maps_"))
    generate.save_cams = _timed("write_s", generate.save_cams)
    generate._infer_batch = _timed("batch_s", generate._infer_batch)
    RPCModel.maps = _timed("forward_s", RPCModel.maps)
    amp = "bf16" if torch.cuda.is_available() else "none"
    try:
        index = voc_sized_dataset(work, a.copies, limit=a.images)
        cfg = make_config("rpc", depth=a.depth, weights="none", num_classes=index.num_classes - 1)
        torch.manual_seed(0)
        save_model(work / "model.pt", RPCModel(cfg).eval(), config_to_dict(cfg), list(index.classes), {})

        def run(workers: str) -> dict:
            TIMES.clear()
            shutil.rmtree(work / "maps", ignore_errors=True)
            t0 = time.perf_counter()
            r = generate.make_rs_cams(work / "model.pt", index.root, "train", work / "maps", amp=amp,
                                      num_workers=workers, save_stages=True)  # fmt: skip
            wall = time.perf_counter() - t0
            parts = {"wall_s": wall, "start_up_s": wall - r["wall_s"], "loader_wait_s": r["wall_s"] - TIMES["batch_s"],
                     "forward_s": TIMES["forward_s"], "write_s": TIMES["write_s"],
                     "rest_of_batch_s": TIMES["batch_s"] - TIMES["forward_s"] - TIMES["write_s"]}  # fmt: skip
            return {**{k: round(v, 3) for k, v in parts.items()}, "images": r["images"],
                    "images_per_s_in_loop": r["images"] / r["wall_s"]}  # fmt: skip

        result = {"depth": a.depth, "amp": amp, "images": len(index.names("train")), "runs": {}}
        for workers in a.workers:
            run(workers)  # warm-up
            result["runs"][f"{workers} workers"] = run(workers)
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            run(a.workers[-1])
        for key in ("cuda_time_total", "cpu_time_total") if torch.cuda.is_available() else ("cpu_time_total",):
            print(prof.key_averages().table(sort_by=key, row_limit=20))
        write_result(f"maps_profile_r{a.depth}", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
