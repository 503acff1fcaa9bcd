"""Whether this machine shows an NVIDIA GPU, without importing torch: the workflow asks when it is parsed, to
request a GPU for the model rules only where one exists (workflow/rules/common.smk)."""

from __future__ import annotations

import os
from pathlib import Path


def local_gpu_count(dev: str | Path | None = None) -> int:
    """The number of NVIDIA GPU device files (``/dev/nvidia0``, ``/dev/nvidia1``, ...); ``$RPC_DEV_DIR`` stands in
    for ``/dev`` (tests simulate a GPU machine with it)."""
    dev = Path(dev or os.environ.get("RPC_DEV_DIR", "/dev"))
    return sum(1 for p in dev.glob("nvidia[0-9]*") if p.name[len("nvidia"):].isdigit())
