"""A Snakemake lock left by a killed run: `make run` continues after a kill instead of asking for `--unlock`, and
never takes the lock of a run that may still be going.

Snakemake locks the working folder (``.snakemake/locks/``) while it runs and removes the lock when it ends; a
process killed with SIGKILL cannot, and the next run stops with "Directory cannot be locked". The workflow's
``onstart`` hook (which Snakemake calls once it holds the lock, never in a dry run) writes a record beside the lock,
``.snakemake/rpc-lock-holder.json``: host, boot id, PID namespace, user, PID and the process's start time
(:func:`write_holder_record`). :func:`unlock_if_stale` removes the lock only when it can show that nobody holds it:

- the record is from this host, this PID namespace and this user (anything else cannot be inspected from here);
- the recorded process is gone: no process with that PID and start time, or the machine was rebooted since;
- and no process started after it still works in the folder (its jobs keep running under PID 1 after a
  ``kill -9`` of Snakemake), other than this command's own ancestors (``make run``, the shell that started it) and
  the processes of its own process group (a pipeline partner such as ``| tail``: a killed run's jobs are in the
  group of that run, and a new group never takes the number of one that still has members).

In every other case (no record, another host or container, another user, a live holder, jobs still running, no
``/proc``) the lock is kept and the one command to type, once the user knows the run is gone, is printed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from rpc.utils.io import DataError, write_json_atomic

RECORD = "rpc-lock-holder.json"
UNLOCK = "snakemake --unlock"


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: enough to tell whether that process still runs, and where."""

    host: str
    boot_id: str
    pid_namespace: str
    uid: int
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: clock ticks since boot


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def boot_id() -> str:
    return (_read("/proc/sys/kernel/random/boot_id") or "").strip()


def pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat``, readable for every user); None
    when there is no such process."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: count the fields after its last ')'
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def _stat_field(pid: int, index: int) -> int | None:
    """Field ``index`` (0 = the state, field 3 of ``/proc/<pid>/stat``) counted after the command name."""
    stat = _read(f"/proc/{pid}/stat")
    return int(stat[stat.rindex(")") + 2 :].split()[index]) if stat else None


def _parent(pid: int) -> int | None:
    return _stat_field(pid, 1)


def current_holder(pid: int | None = None) -> Holder:
    pid = os.getpid() if pid is None else pid
    return Holder(socket.gethostname(), boot_id(), pid_namespace(), os.getuid(), pid, start_ticks(pid) or 0)


def record_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / ".snakemake" / RECORD


def write_holder_record(folder: str | os.PathLike = ".") -> Path:
    """Called by the workflow's ``onstart`` (in the Snakemake process, which then holds the lock)."""
    path = record_path(folder)
    write_json_atomic(path, asdict(current_holder()))
    return path


def read_holder_record(folder: str | os.PathLike) -> Holder | None:
    text = _read(str(record_path(folder)))
    if text is None:
        return None
    try:
        return Holder(**json.loads(text))
    except (ValueError, TypeError):  # unreadable or from another version: treated as no record
        return None


def _ancestors() -> set[int]:
    seen, pid = set(), os.getpid()
    while pid and pid not in seen:
        seen.add(pid)
        pid = _parent(pid)
    return seen


def working_processes(folder: str | os.PathLike, started_after: int) -> list[int]:
    """PIDs of processes that started at or after ``started_after`` (clock ticks) and whose working directory is
    ``folder``, this command's ancestors and process group excluded."""
    folder, mine, group, found = Path(folder).resolve(), _ancestors(), os.getpgrp(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (pid := int(entry.name)) in mine:
            continue
        try:
            if Path(os.readlink(entry / "cwd")).resolve() != folder:
                continue
        except OSError:  # ended meanwhile, or another user's (the record's user is checked before)
            continue
        ticks = start_ticks(pid)  # the stat fields only of the processes in the folder
        if ticks is not None and ticks >= started_after and _stat_field(pid, 2) != group:
            found.append(pid)
    return sorted(found)


def unlock_if_stale(folder: str | os.PathLike = ".") -> str:
    """Remove ``folder``'s Snakemake locks when nobody holds them (module docstring); returns one line saying what
    was found and done. A lock folder that is a symbolic link is a :class:`DataError` (one line naming it), and
    nothing is changed."""
    locks = Path(folder) / ".snakemake" / "locks"
    if locks.is_symlink():  # whatever it points to is not this folder's lock to remove: nothing is touched
        raise DataError(f"{locks} is a symbolic link (to {os.readlink(locks)}), not touched: Snakemake's lock "
                        f"folder must be a real folder; remove the link once no run uses it")  # fmt: skip
    if not locks.is_dir() or not any(locks.iterdir()):
        return "no lock"
    keep = f"lock kept; once you know that run has ended, type: {UNLOCK}"
    if not Path("/proc").is_dir():
        return f"locked, and this system has no /proc to check by whom: {keep}"
    holder, here = read_holder_record(folder), current_holder()
    if holder is None:
        return f"locked by a run that left no record (Snakemake without this workflow's onstart hook?): {keep}"
    if holder.host != here.host:
        return f"locked by a run on host {holder.host} (PID {holder.pid}), which cannot be checked from here: {keep}"
    if holder.pid_namespace != here.pid_namespace:
        return f"locked by PID {holder.pid} of another PID namespace (another container?): {keep}"
    if holder.uid != here.uid:
        return f"locked by a run of user id {holder.uid} (PID {holder.pid}), whose jobs this user cannot see: {keep}"
    if holder.boot_id == here.boot_id:
        if start_ticks(holder.pid) == holder.start_ticks:
            return f"locked by Snakemake PID {holder.pid}, which is still running: not touched"
        jobs = working_processes(folder, holder.start_ticks)
        if jobs:
            return f"Snakemake PID {holder.pid} is gone, but processes {jobs} still work in this folder: {keep}"
    shutil.rmtree(locks)
    return f"removed a stale lock: its Snakemake (PID {holder.pid}) is gone and no job of it runs"
