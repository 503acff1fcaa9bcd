"""A Snakemake lock left by a killed run: `make run` continues after a kill instead of asking for `--unlock`.

Snakemake locks the working folder (``.snakemake/locks/``) while it runs and removes the lock when it ends; a
process killed with SIGKILL cannot, and the next run stops with "Directory cannot be locked". The lock is stale
when no Snakemake process has this folder as its working directory: then it is removed (what `snakemake --unlock`
does). Where processes cannot be inspected (no ``/proc``), nothing is removed and the one command to type is said.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def snakemake_processes(folder: str | os.PathLike) -> list[int] | None:
    """PIDs of Snakemake processes (other than this one) whose working directory is ``folder``; None where that
    cannot be known (no ``/proc``)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    folder = Path(folder).resolve()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "snakemake" in cmdline and Path(os.readlink(entry / "cwd")).resolve() == folder:
                found.append(int(entry.name))
        except OSError:  # the process ended meanwhile, or belongs to another user
            continue
    return found


def unlock_if_stale(folder: str | os.PathLike = ".") -> str:
    """Remove ``folder``'s Snakemake locks when no Snakemake process runs there; returns what was done."""
    locks = Path(folder) / ".snakemake" / "locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        return "no lock"
    running = snakemake_processes(folder)
    if running is None:
        return "locked; if no other Snakemake runs in this folder, type: snakemake --unlock"
    if running:
        return f"locked by running Snakemake process(es) {running}: not touched"
    shutil.rmtree(locks)
    return "removed a stale lock left by a killed run"
