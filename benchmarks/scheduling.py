"""One job with every core, or one job per core? For each stage, two real jobs (the `python -m rpc` commands the
rules run) are timed both ways on this machine: one after the other with ``OMP_NUM_THREADS=<cores>``, and side
by side with ``OMP_NUM_THREADS=1`` each. The faster way is what ``config.yaml``'s ``cpu_threads`` should say.

    python -m benchmarks.scheduling --results results   (after `make run`: it uses that run's dataset and models)
        ->  benchmarks/out/scheduling.json

Each job is the stage as the default config runs it (a classifier of 6 epochs, a map shard of half the training
images, DeepLab's 100 iterations, the val predictions with CRF), start-up included as the workflow pays it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import default_amp, write_result


def commands(results: Path, dataset: Path, tmp: Path, job: int, amp: str) -> dict[str, list[str]]:
    """Per stage, the command of job ``job`` (its own output folders)."""
    py = [sys.executable, "-m", "rpc"]
    out = tmp / f"job{job}"
    model = results / "rpc-s15" / "classifier.pt"
    seg = results / "rpc-s15" / "segmentation" / "model.pt"
    return {
        "train": [*py, "train", "--dataset", str(dataset), "--work", str(out / "w"), "--out", str(out / "c.pt"),
                  "--preset", "rpc", "--set", "model.depth=18", "model.weights=none", "train.batch_size=8",
                  "train.crop=128", "train.epochs=6", "train.num_workers=1", f"train.seed={job}",
                  f"train.amp={amp}"],
        "maps": [*py, "cams", "--model", str(model), "--dataset", str(dataset), "--split", "train_aug", "--out",
                 str(out / "maps"), "--shard", str(job), "--num-shards", "2", "--batch-size", "8", "--workers", "1",
                 "--amp", amp],
        "deeplab": [*py, "seg-train", "--config", "config/mmseg/deeplabv2_r18-d8_1xb8-5ep_synthetic-128x128.py",
                    "--dataset", str(dataset), "--split", "train_aug", "--masks", "ground-truth", "--amp", amp,
                    "--work",
                    str(out / "sw"), "--out", str(out / "s.pt"), "--cfg-options"],
        "predict": [*py, "seg-predict", "--model", str(seg), "--dataset", str(dataset), "--split", "val",
                    "--out", str(out / "pred"), "--crf-out", str(out / "pred_crf")],
    }  # fmt: skip


def run_pair(cmds: list[list[str]], threads: int, together: bool) -> float:
    """Wall seconds for both commands, side by side or one after the other, each with ``threads`` threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    if together:
        procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in cmds]
        errors = [p.communicate()[1] for p in procs]
        codes = [p.returncode for p in procs]
    else:
        done = [subprocess.run(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in cmds]
        errors, codes = [d.stderr for d in done], [d.returncode for d in done]
    wall = time.perf_counter() - t0
    for code, err in zip(codes, errors, strict=True):
        if code not in (0, 3):  # 3: train.max_steps reached (a checkpoint, no model): expected here
            raise RuntimeError(f"benchmark job failed ({code}):\n{err.decode()[-2000:]}")
    return wall


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", default="results", help="a finished default run (dataset, rpc-s15 models)")
    ap.add_argument("--stages", nargs="+", default=["train", "maps", "deeplab", "predict"])
    ap.add_argument("--amp", choices=["bf16", "none"], default=default_amp(), help="the jobs' precision")
    a = ap.parse_args(argv)
    results = Path(a.results)
    dataset = results / "data" / "prepared"
    cores = os.cpu_count() or 1
    out = {}
    for stage in a.stages:
        tmp = Path(tempfile.mkdtemp(prefix="rpc_bench_sched_"))
        try:
            pairs = [
                [commands(results, dataset, tmp / way, j, a.amp)[stage] for j in range(2)] for way in ("seq", "par")
            ]
            sequential = run_pair(pairs[0], cores, together=False)
            side_by_side = run_pair(pairs[1], max(1, cores // 2), together=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        best = (
            f"{max(1, cores // 2)} thread(s) per job, two jobs side by side"
            if side_by_side < sequential
            else f"{cores} threads per job"
        )
        out[stage] = {"one_job_all_cores_s": round(sequential, 1), "two_jobs_side_by_side_s":
                      round(side_by_side, 1), "speedup_side_by_side": round(sequential / side_by_side, 2),
                      "best": best}  # fmt: skip
        print(stage, out[stage], flush=True)
    write_result("scheduling", {"cores": cores, "amp": a.amp, "stages": out})


if __name__ == "__main__":
    main()
