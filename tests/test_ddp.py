"""DDP on CPU (gloo) under torchrun, launched as the workflow launches a multi-GPU job: the classifier's steps
equal one process's, a divergence on one rank stops every rank, and DeepLab trains through mmengine's launcher."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rpc.engine.config import build_configs
from rpc.engine.train import train_classifier

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", "localhost:0"]  # fmt: skip
# rpc preset (two stages, SFA attention with its training-mode BatchNorm), tiny: 6 steps of 4 images (2 per rank)
TRAIN = ["model.depth=18", "model.weights=none", "train.batch_size=4", "train.epochs=1", "train.crop=64",
         "train.long_side=[64, 96]", "train.num_workers=0", "train.lr=0.01", "train.amp=none",
         "train.log_interval=1"]  # fmt: skip
TOLERANCE = 1e-4  # max abs weight difference after 6 steps: measured ~1e-5 (summation order); ~4e-3 if the
# attention BatchNorm used each process's half batch
SEG_CONFIG = "config/mmseg/deeplabv2_r18-d8_1xb8-5ep_synthetic-128x128.py"


def _torchrun(args: list[str], timeout: float = 150) -> subprocess.CompletedProcess:
    """Run under torchrun with 2 processes; a run still going after ``timeout`` s (a hang) is killed with all
    its workers, and the test fails."""
    # unbuffered: each log record and each result line is one write, so the two ranks' lines, sharing one
    # pipe, cannot cut into each other
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*TORCHRUN, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun {' '.join(args[:3])} still running after {timeout} s (hang?):\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_two_processes_train_as_one(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    cmd = ["-m", "rpc", "train", "--dataset", str(index.root), "--work", str(tmp_path / "w2"), "--out",
           str(tmp_path / "m2.pt"), "--set", *TRAIN]  # fmt: skip
    proc = _torchrun(cmd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model_cfg, train_cfg = build_configs("rpc", None, TRAIN)
    single = train_classifier(index.root, tmp_path / "w1", tmp_path / "m1.pt", model_cfg, train_cfg)
    assert single["step"] == 6
    a = torch.load(tmp_path / "m1.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "m2.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    diff = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    print(f"max abs difference of the weights, 2 processes vs 1: {diff:.3g}")
    assert diff < TOLERANCE
    # the logged losses are the global batch's in both
    log1, log2 = ([json.loads(x) for x in (tmp_path / w / "metrics.jsonl").read_text().splitlines()]
                  for w in ("w1", "w2"))  # fmt: skip
    assert [x["step"] for x in log2] == [1, 2, 3, 4, 5, 6]
    for x, y in zip(log1, log2, strict=True):
        assert x["total"] == pytest.approx(y["total"], abs=1e-3)


_DIVERGE_ON_RANK_1 = """
import os, sys
import torch
from rpc.cli import main
from rpc.engine.train import TrainingDiverged
from rpc.models.rpc import RPCModel

original, calls = RPCModel.losses, []


def losses(self, out, labels):
    result = original(self, out, labels)
    calls.append(1)
    if os.environ["RANK"] == "1" and len(calls) == 2:  # rank 1 alone gets a non-finite loss, at step 1
        result = {**result, "total": result["total"] * float("nan")}
    return result


RPCModel.losses = losses
try:
    main(sys.argv[1:])
except TrainingDiverged as exc:
    print(f"rank {os.environ['RANK']} stopped: {exc}", file=sys.stderr, flush=True)
    torch.distributed.barrier()  # so that torchrun ends neither rank before both have said so
    sys.exit(3)
print(f"rank {os.environ['RANK']} finished", file=sys.stderr)
"""


def test_a_non_finite_loss_on_one_rank_stops_both(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    script = tmp_path / "diverge.py"
    script.write_text(_DIVERGE_ON_RANK_1)
    cmd = [str(script), "train", "--dataset", str(index.root), "--work", str(tmp_path / "w"), "--out",
           str(tmp_path / "m.pt"), "--set", *TRAIN]  # fmt: skip
    proc = _torchrun(cmd, timeout=120)
    assert proc.returncode != 0
    for rank in (0, 1):
        assert re.search(rf"rank {rank} stopped: non-finite loss at step 1 on at least one of 2 process\(es\) "
                         rf"\(this one, rank {rank}: ", proc.stderr), proc.stderr[-3000:]  # fmt: skip
    assert "finished" not in proc.stderr and not (tmp_path / "m.pt").exists()


def test_deeplab_trains_on_two_processes(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    options = ["train_dataloader.batch_size=2", "train_dataloader.num_workers=0",
               "train_dataloader.persistent_workers=False", "train_cfg.max_iters=2", "param_scheduler.0.end=2",
               "default_hooks.checkpoint.interval=1", "default_hooks.logger.interval=1"]  # fmt: skip
    cmd = ["-m", "rpc", "seg-train", "--config", SEG_CONFIG, "--dataset", str(index.root), "--split", "train_aug",
           "--masks", "ground-truth", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "m.pt"),
           "--launcher", "pytorch", "--cfg-options", *options]  # fmt: skip
    proc = _torchrun(cmd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert len(results) == 2 and results[0] == results[1]  # one line per rank; amp auto: rank 0's choice for both
    assert {k: v for k, v in results[0].items() if k != "bf16"} == {"iterations": 2, "resumed": False, "images": 24}
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    assert "decode_head.aspp.0.weight" in ckpt["state_dict"] and (tmp_path / "w" / "COMPLETE").is_file()
    stored = json.loads(ckpt["config"])  # the resolved config, as JSON data
    assert stored["env_cfg"]["dist_cfg"]["backend"] == "gloo" and stored["model_wrapper_cfg"]["device_ids"] is None
    # as if killed after iteration 1's checkpoint: rank 0 picks the resume point, both ranks resume from it
    work = tmp_path / "w"
    for name in ("COMPLETE", "iter_2.pth"):
        (work / name).unlink()
    (work / "last_checkpoint").write_text(str(work / "iter_1.pth"))
    (tmp_path / "m.pt").unlink()
    proc = _torchrun(cmd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert results == [{"iterations": 2, "resumed": True, "images": 24, "bf16": results[0]["bf16"]}] * 2
    assert (tmp_path / "m.pt").is_file()


def test_deeplab_on_two_processes_takes_the_same_steps_as_one_with_the_whole_batch(tiny_synthetic, tmp_path):
    """The config's batch is the global batch: 2 processes of 2 images a step train the same weights as 1 process
    of 4 (no random augmentation, so that both see the same pixels; frozen BatchNorm; DDP averages the gradients
    of the two per-process mean losses over equal pixel counts)."""
    _, _, index = tiny_synthetic
    config = tmp_path / "fixed.py"
    config.write_text(
        f"_base_ = [{str(REPO / SEG_CONFIG)!r}]\n"
        "train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]\n"
        "train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,\n"
        "                        sampler=dict(type='InfiniteSampler', shuffle=False),\n"
        "                        dataset=dict(pipeline=train_pipeline))\n"
    )
    options = ["train_cfg.max_iters=3", "param_scheduler.0.end=3", "default_hooks.checkpoint.interval=3",
               "default_hooks.logger.interval=1"]  # fmt: skip

    def cmd(name, launcher):
        return ["-m", "rpc", "seg-train", "--config", str(config), "--dataset", str(index.root), "--split", "train",
                "--masks", "ground-truth", "--work", str(tmp_path / f"w{name}"), "--out", str(tmp_path / f"{name}.pt"),
                "--launcher", launcher, "--amp", "none", "--seed", "3", "--cfg-options", *options]  # fmt: skip

    two = _torchrun(cmd("two", "pytorch"))
    assert two.returncode == 0, two.stderr[-3000:]
    assert "global batch 4 = 2 processes x 2" in two.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, *cmd("one", "none")], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    # what the test tells apart: one process with half the batch (each process's share) trains other weights
    half = subprocess.run([sys.executable, *cmd("half", "none"), "train_dataloader.batch_size=2"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert half.returncode == 0, half.stderr[-3000:]
    w1, w2, wh = (torch.load(tmp_path / f"{n}.pt", weights_only=True)["state_dict"] for n in ("one", "two", "half"))
    assert w1.keys() == w2.keys()

    def max_diff(a, b):
        return max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point())

    assert max_diff(w1, w2) < 1e-5
    assert max_diff(w1, wh) > 1e-3
