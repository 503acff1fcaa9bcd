"""Helpers for runs under ``torchrun`` (several processes, one per rank), shared by the training stages."""

from __future__ import annotations

import os

import torch


def on_rank0(fn, world: int, rank: int):
    """``fn()`` on rank 0 only; every rank returns its result (a picklable value). The other ranks wait for it:
    a barrier for work-folder preparation. An exception on rank 0 is raised on every rank (as a RuntimeError
    with its message elsewhere), so no rank is left waiting in a later collective."""
    if world == 1:
        return fn()
    box = [None, None]  # result, error message
    if rank == 0:
        try:
            box[0] = fn()
        except Exception as exc:
            box[1] = f"{type(exc).__name__}: {exc}"
            torch.distributed.broadcast_object_list(box, src=0)
            raise
    torch.distributed.broadcast_object_list(box, src=0)
    if box[1] is not None:
        raise RuntimeError(f"rank 0 failed while preparing the run: {box[1]}")
    return box[0]


def dist_info() -> tuple[int, int, int]:
    """``(world size, rank, local rank)`` of this process as torchrun sets them (``(1, 0, 0)`` alone)."""
    env = os.environ
    return int(env.get("WORLD_SIZE", "1")), int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0"))
