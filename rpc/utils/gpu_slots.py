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

The lock folder sits where anyone may plant a link, so nothing in it is followed (:func:`open_lock_dir`,
:func:`try_lock`):

- a folder this process creates gets mode 1777 (every user's jobs lock in it; the sticky bit keeps each user's
  lock files from being removed by another); the mode of a folder that already exists is never changed;
- an existing folder is used only if it is a real folder, not a symbolic link, owned by this user or by root, or
  shared: another user's folder with the sticky bit (as this module makes it, for a job of that user);
- lock files are opened without following a link (``O_NOFOLLOW``, relative to the folder's open descriptor),
  created only as new files (``O_CREAT | O_EXCL``, which never follows one either), and must be regular files
  with one link; they are opened read-only (``flock`` needs no write access, and a lock file another user
  created is readable by all).

Anything else is a :class:`LockPathError`, one line naming the path (exit status 2 from the command line).
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import stat
import sys
import time
from pathlib import Path

from rpc.utils.gpus import local_gpu_count

DEFAULT_LOCK_DIR = "/tmp/rpc-gpu-slots"
USE_ANOTHER = "set RPC_GPU_LOCK_DIR to a folder of your own"


class LockPathError(OSError):
    """A lock folder or lock file this module does not use (module docstring): its message is one line naming
    the path."""


def _link_or(path: Path, exc: OSError, what: str) -> LockPathError:
    """The error for ``path`` that could not be opened without following a link."""
    if path.is_symlink():
        return LockPathError(f"{path}: the GPU {what} is a symbolic link (to {os.readlink(path)}), which is not "
                             f"followed; remove it or {USE_ANOTHER}")  # fmt: skip
    if exc.errno == errno.ENOTDIR:
        return LockPathError(f"{path}: the GPU {what} is not a folder; remove it or {USE_ANOTHER}")
    return LockPathError(f"{path}: cannot open the GPU {what} ({exc.strerror}); {USE_ANOTHER}")


def open_lock_dir(folder: Path) -> int:
    """An open descriptor of the lock folder ``folder``, created if missing, checked as the module docstring says."""
    created = False
    try:
        os.mkdir(folder, 0o700)
        created = True
    except FileExistsError:
        pass
    except FileNotFoundError:  # a folder of the user's choice whose parents are missing
        folder.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(folder, 0o700)
        created = True
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise _link_or(folder, exc, "lock folder") from None
    st = os.fstat(fd)
    mine = st.st_uid == os.geteuid()
    if created and mine:
        os.fchmod(fd, 0o1777)  # every user's jobs share the machine's GPUs
    elif not (mine or st.st_uid == 0 or st.st_mode & stat.S_ISVTX):
        os.close(fd)
        raise LockPathError(f"{folder}: the GPU lock folder belongs to user id {st.st_uid} and is not shared (no "
                            f"sticky bit, mode {stat.S_IMODE(st.st_mode):o}); {USE_ANOTHER}")  # fmt: skip
    return fd


def lock_dir() -> Path:
    """The lock folder (``$RPC_GPU_LOCK_DIR`` or :data:`DEFAULT_LOCK_DIR`), created if missing and checked."""
    folder = Path(os.environ.get("RPC_GPU_LOCK_DIR", DEFAULT_LOCK_DIR))
    os.close(open_lock_dir(folder))
    return folder


def devices() -> list[str]:
    """The devices this job may use: ``CUDA_VISIBLE_DEVICES`` if set, else every ``/dev/nvidia<i>``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    return [str(i) for i in range(local_gpu_count())]


def _open_lock_file(path: Path, dir_fd: int | None) -> int:
    """``path`` (its name in the folder ``dir_fd`` where given) opened read-only, never through a link; created
    as a new file if missing."""
    name = path.name if dir_fd is not None else path
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # O_NONBLOCK: a planted FIFO cannot block the open
    for _ in range(10):
        try:
            fd = os.open(name, flags, dir_fd=dir_fd)
            break
        except FileNotFoundError:
            try:
                fd = os.open(name, flags | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dir_fd)
                os.fchmod(fd, 0o644)  # whatever the umask: every user's jobs open it to lock
                break
            except FileExistsError:  # another job made it meanwhile (or a link was planted): open what is there
                continue
        except OSError as exc:
            raise _link_or(path, exc, "lock file") from None
    else:
        raise LockPathError(f"{path}: the GPU lock file keeps appearing and disappearing; {USE_ANOTHER}")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        kind = "has other hard links" if stat.S_ISREG(st.st_mode) else "is not a regular file"
        raise LockPathError(f"{path}: the GPU lock file {kind}; remove it or {USE_ANOTHER}")
    return fd


def try_lock(path: Path, dir_fd: int | None = None) -> int | None:
    """An open, flock-ed descriptor of ``path``, or None if another process holds it. With ``dir_fd`` (the lock
    folder's descriptor, :func:`open_lock_dir`) the file is opened by its name in that folder."""
    fd = _open_lock_file(path, dir_fd)
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
    dir_fd = open_lock_dir(folder)
    try:
        while True:
            held = []
            for device in candidates:
                try:
                    fd = try_lock(folder / f"gpu{device}.lock", dir_fd)
                except LockPathError:
                    for _, taken in held:
                        os.close(taken)
                    raise
                if fd is not None:
                    held.append((device, fd))
                    if len(held) == n:
                        return [d for d, _ in held], [fd for _, fd in held]
            for _, fd in held:  # not enough free: give back what we took, so two jobs never hold half each
                os.close(fd)
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                raise TimeoutError(f"no {n} free GPU(s) among {candidates} after {timeout_s} s")
            time.sleep(poll_s)
    finally:
        os.close(dir_fd)


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
        try:
            ids, fds = acquire(a.gpus, candidates, Path(os.environ.get("RPC_GPU_LOCK_DIR", DEFAULT_LOCK_DIR)))
        except LockPathError as exc:
            print(f"gpu_slots: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        for fd in fds:
            os.set_inheritable(fd, True)  # the command holds the locks until it exits
        env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
        print(f"gpu_slots: CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}", file=sys.stderr, flush=True)
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
