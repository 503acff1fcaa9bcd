"""GPU jobs on one workstation: each gets its own device(s), and waits when none is free (rpc/utils/gpu_slots.py).
No GPU is needed: the devices are named by CUDA_VISIBLE_DEVICES or simulated /dev/nvidia<i> files."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the job: say which devices it sees and when it ran, then hold them a while
JOB = "import os, time; t = time.time(); time.sleep({hold}); print(os.environ['CUDA_VISIBLE_DEVICES'], t, time.time())"


def _start(gpus: int, devices: str, locks: Path, hold: float = 1.0) -> subprocess.Popen:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": devices, "RPC_GPU_LOCK_DIR": str(locks), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "rpc.utils.gpu_slots", "--gpus", str(gpus), "--", sys.executable, "-c",
           JOB.format(hold=hold)]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc) -> tuple[set[str], float, float]:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    visible, start, end = out.split()
    return set(visible.split(",")), float(start), float(end)


def test_concurrent_jobs_get_different_gpus(tmp_path):
    jobs = [_start(1, "0,1", tmp_path) for _ in range(2)]
    (a, a0, a1), (b, b0, b1) = (_result(j) for j in jobs)
    assert a | b == {"0", "1"} and not a & b
    assert a0 < b1 and b0 < a1  # they ran at the same time


def test_with_one_gpu_the_jobs_run_one_after_the_other(tmp_path):
    first = _start(1, "0", tmp_path, hold=1.5)
    time.sleep(0.3)
    second = _start(1, "0", tmp_path, hold=0.1)
    (a, _, a_end), (b, b_start, _) = _result(first), _result(second)
    assert a == b == {"0"} and b_start >= a_end - 0.05  # the second started once the first had ended


def test_a_multi_gpu_job_gets_a_disjoint_set(tmp_path):
    big, small = _start(2, "0,1,2", tmp_path), _start(1, "0,1,2", tmp_path)
    (a, _, _), (b, _, _) = _result(big), _result(small)
    assert len(a) == 2 and len(b) == 1 and not a & b


def test_a_job_asking_for_more_gpus_than_the_machine_has_is_an_error(tmp_path):
    out, err = _start(2, "0", tmp_path).communicate(timeout=60)
    assert "asks for 2 GPU(s) but the machine shows 1" in err


@pytest.mark.parametrize("gpus", [0, 1])
def test_the_workflow_wraps_gpu_jobs_only_where_a_gpu_is_seen(tmp_path, gpus):
    """With a simulated GPU (a /dev/nvidia0 file) every model job's command starts through the slot lock; on a
    CPU-only machine none does."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for i in range(gpus):
        (dev / f"nvidia{i}").touch()
    work = tmp_path / "w"
    work.mkdir()
    env = {**os.environ, "RPC_DEV_DIR": str(dev), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "2", "-s", str(REPO / "Snakefile")]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    commands = [line for line in proc.stdout.splitlines() if "-m rpc " in line]
    model = [c for c in commands if any(f"rpc {s} " in c for s in ("pretrain", "train", "cams", "seg-train",
                                                                        "seg-predict"))]  # fmt: skip
    wrapped = [c for c in model if "python -m rpc.utils.gpu_slots --gpus 1 -- " in c]
    assert model and len(wrapped) == (len(model) if gpus else 0)


def test_without_any_visible_gpu_the_command_runs_as_is(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(RPC_GPU_LOCK_DIR=str(tmp_path), RPC_DEV_DIR=str(tmp_path), PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "rpc.utils.gpu_slots", "--gpus", "1", "--", sys.executable, "-c", "print('ran')"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ran" and "no GPU visible" in proc.stderr


def _refused(proc) -> str:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and not out, (out, err)
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    return err.strip()


def test_a_symlink_at_the_lock_folder_is_refused_and_its_target_keeps_its_mode(tmp_path, monkeypatch):
    """The default lock folder is under /tmp, where anyone can plant a link: it is never followed (nor chmod-ed)."""
    from rpc.utils.gpu_slots import LockPathError, lock_dir

    target = tmp_path / "elsewhere"
    target.mkdir()
    target.chmod(0o750)
    link = tmp_path / "slots"
    link.symlink_to(target)
    err = _refused(_start(1, "0", link))
    assert err == (f"gpu_slots: {link}: the GPU lock folder is a symbolic link (to {target}), which is not "
                   "followed; remove it or set RPC_GPU_LOCK_DIR to a folder of your own")  # fmt: skip
    monkeypatch.setenv("RPC_GPU_LOCK_DIR", str(link))
    with pytest.raises(LockPathError, match="is a symbolic link"):
        lock_dir()
    assert (target.stat().st_mode & 0o7777) == 0o750 and not list(target.iterdir())


@pytest.mark.parametrize("victim_exists", [True, False])
def test_a_lock_file_that_is_a_symlink_is_refused(tmp_path, victim_exists):
    from rpc.utils.gpu_slots import LockPathError, acquire

    locks = tmp_path / "locks"
    locks.mkdir()
    victim = tmp_path / "victim"
    if victim_exists:
        victim.write_text("keep")
    (locks / "gpu0.lock").symlink_to(victim)
    err = _refused(_start(1, "0", locks))
    assert err == (f"gpu_slots: {locks / 'gpu0.lock'}: the GPU lock file is a symbolic link (to {victim}), which is "
                   "not followed; remove it or set RPC_GPU_LOCK_DIR to a folder of your own")  # fmt: skip
    with pytest.raises(LockPathError, match="gpu0.lock: the GPU lock file is a symbolic link"):
        acquire(1, ["0"], locks, timeout_s=0)
    assert (victim.read_text() == "keep") if victim_exists else not victim.exists()


def test_only_a_lock_folder_made_here_gets_the_shared_mode(tmp_path, monkeypatch):
    from rpc.utils.gpu_slots import lock_dir

    monkeypatch.setenv("RPC_GPU_LOCK_DIR", str(tmp_path / "new"))
    assert (lock_dir().stat().st_mode & 0o7777) == 0o1777
    mine = tmp_path / "mine"
    mine.mkdir()
    mine.chmod(0o700)
    monkeypatch.setenv("RPC_GPU_LOCK_DIR", str(mine))
    assert lock_dir() == mine and (mine.stat().st_mode & 0o7777) == 0o700


def test_a_lock_file_that_is_not_a_plain_file_is_refused(tmp_path):
    from rpc.utils.gpu_slots import LockPathError, acquire

    (tmp_path / "gpu0.lock").mkdir()
    with pytest.raises(LockPathError, match="gpu0.lock: the GPU lock file is not a regular file"):
        acquire(1, ["0"], tmp_path, timeout_s=0)
    (tmp_path / "other").write_text("keep")
    os.link(tmp_path / "other", tmp_path / "gpu1.lock")  # a hard link to another file
    with pytest.raises(LockPathError, match="gpu1.lock: the GPU lock file has other hard links"):
        acquire(1, ["1"], tmp_path, timeout_s=0)
