"""One GPU per job on a workstation: a lock file per device, and the job's command started with only its devices
visible.

``python -m rpc.utils.gpu_slots --gpus N -- COMMAND ...`` waits until N devices are free, locks them (``flock`` on
``<lock dir>/gpu<i>.lock``), sets ``CUDA_VISIBLE_DEVICES`` to them and replaces itself with COMMAND, which keeps
the locks (the lock files stay open across ``exec``) until it exits, however it exits. So jobs that Snakemake
starts together each get their own GPU, a multi-GPU job gets a disjoint set (its ``torchrun`` ranks then see
``cuda:0..N-1``), and with fewer free devices than jobs the rest wait their turn instead of sharing a device.

The devices are those of ``CUDA_VISIBLE_DEVICES`` if set (a SLURM job's allocation), else ``/dev/nvidia<i>``
(:func:`rpc.utils.gpus.local_gpu_count`). The lock folder is ``$RPC_GPU_LOCK_DIR`` or ``/tmp/rpc-gpu-slots``
(shared by every user of the machine). Torch is not imported: the devices are chosen before CUDA starts.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time
from pathlib import Path

from rpc.utils.gpus import local_gpu_count


def lock_dir() -> Path:
    folder = Path(os.environ.get("RPC_GPU_LOCK_DIR", "/tmp/rpc-gpu-slots"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        folder.chmod(0o1777)  # every user's jobs share the machine's GPUs
    except OSError:
        pass
    return folder


def devices() -> list[str]:
    """The devices this job may use: ``CUDA_VISIBLE_DEVICES`` if set, else every ``/dev/nvidia<i>``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    return [str(i) for i in range(local_gpu_count())]


def try_lock(path: Path) -> int | None:
    """An open, flock-ed descriptor of ``path``, or None if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def acquire(n: int, candidates: list[str], folder: Path, poll_s: float = 0.5, timeout_s: float | None = None):
    """``(device ids, lock descriptors)``: ``n`` of ``candidates`` locked together, waiting until they are free."""
    if n > len(candidates):
        raise SystemExit(f"this job asks for {n} GPU(s) but the machine shows {len(candidates)} ({candidates})")
    start = time.monotonic()
    while True:
        held = []
        for device in candidates:
            fd = try_lock(folder / f"gpu{device}.lock")
            if fd is not None:
                held.append((device, fd))
                if len(held) == n:
                    return [d for d, _ in held], [fd for _, fd in held]
        for _, fd in held:  # not enough free: give back what we took, so two jobs never hold half each
            os.close(fd)
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"no {n} free GPU(s) among {candidates} after {timeout_s} s")
        time.sleep(poll_s)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m rpc.utils.gpu_slots", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--gpus", type=int, required=True, help="devices this job needs")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    a = p.parse_args(argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        p.error("no command given (after --)")
    env = dict(os.environ)
    candidates = devices()
    if a.gpus > 0 and not candidates:  # no device named anywhere: nothing to share, the command decides
        print("gpu_slots: no GPU visible (no CUDA_VISIBLE_DEVICES, no /dev/nvidia*): running as is", file=sys.stderr)
    elif a.gpus > 0:
        ids, fds = acquire(a.gpus, candidates, lock_dir())
        for fd in fds:
            os.set_inheritable(fd, True)  # the command holds the locks until it exits
        env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
        print(f"gpu_slots: CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}", file=sys.stderr, flush=True)
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
