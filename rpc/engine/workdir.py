"""Work folders of the training stages: the resume point of an interrupted run, and nothing more.

A run that finishes writes ``COMPLETE`` into its work folder. A later run in the same folder is then a new
training (Snakemake reruns a training only when its inputs or parameters changed), so it starts from scratch
instead of "resuming" a finished run with stale settings. A run that was interrupted (no ``COMPLETE``) resumes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from rpc.utils.io import write_text_atomic

MARKER = "COMPLETE"


def start_work_dir(path: str | os.PathLike) -> Path:
    """Create ``path``; empty it first if it holds a finished run."""
    path = Path(path)
    if (path / MARKER).is_file():
        print(f"{path} holds a finished training; starting a new one from scratch")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def mark_complete(path: str | os.PathLike, info: dict) -> None:
    write_text_atomic(Path(path) / MARKER, json.dumps(info) + "\n")
