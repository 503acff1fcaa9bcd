"""Initial weights keyed by (seed, module).

Every module of a model draws its initial weights from a generator seeded by ``(seed, key)``, where ``key``
names the module (``stage1.classifier``, ``stage0.fusion.side2``, ...). Two configurations that differ in one
module therefore start every module they share from the same weights: adding SFA to stage 1 changes neither
stage 2's classifier nor any side projection. The global random state is left as it was.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager

import torch


def module_seed(seed: int, key: str) -> int:
    """A 63-bit seed derived from ``(seed, key)``; stable across processes, machines and Python versions."""
    digest = hashlib.sha256(f"{int(seed)}/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@contextmanager
def keyed_init(seed: int | None, key: str):
    """Inside the block, torch's CPU generator is seeded by ``module_seed(seed, key)``; afterwards it is back
    where it was. ``seed=None`` leaves the global generator in charge (modules whose weights are loaded)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(module_seed(seed, key))
        yield
