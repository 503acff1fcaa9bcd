"""Whether this machine shows an NVIDIA GPU, without importing torch: the workflow asks when it is parsed, to
request a GPU for the model rules only where one exists (workflow/rules/common.smk)."""

from __future__ import annotations

from pathlib import Path


def local_gpu_count(dev: str | Path = "/dev") -> int:
    """The number of NVIDIA GPU device files (``/dev/nvidia0``, ``/dev/nvidia1``, ...)."""
    return sum(1 for p in Path(dev).glob("nvidia[0-9]*") if p.name[len("nvidia"):].isdigit())
