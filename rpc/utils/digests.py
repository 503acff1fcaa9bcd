"""Are two runs' outputs the same? Digests of every file under a results folder, for the determinism test, the
chaos run (``benchmarks/chaos.py``) and users comparing two runs (``python -m rpc compare-results A B``).

Files are compared byte for byte (maps, masks, model files and checkpoints are written reproducibly: fixed
archive dates and names), except JSON files, which are compared as data after dropping the timing fields (keys
ending in ``_s``: ``wall_s``, ``images_per_s``, ``corpus_generation_s``) and with the run's own folder written as
``<run>`` (a dataset description records absolute paths): how long a run took, and where, is not its result.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

TIMING_SUFFIX = "_s"


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if not k.endswith(TIMING_SUFFIX)}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def file_digest(path: Path, run_dir: str | None = None) -> str:
    """SHA-256 of the file; for JSON, of its data without timings and with ``run_dir`` replaced by ``<run>``."""
    if path.suffix == ".json":
        try:
            text = path.read_text()
            if run_dir:
                text = text.replace(json.dumps(run_dir)[1:-1], "<run>")
            data = _without_timings(json.loads(text))
            return "json:" + hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        except ValueError:
            pass  # not JSON after all: compared as bytes
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def output_digests(root: str | os.PathLike) -> dict[str, str]:
    """``{relative path: digest}`` of every file under ``root`` (hidden provenance records included); paths
    inside the folder that holds ``root`` (the run's working directory) are compared as ``<run>/...``."""
    root = Path(root)
    run_dir = str(root.resolve().parent)
    return {str(p.relative_to(root)): file_digest(p, run_dir) for p in sorted(root.rglob("*")) if p.is_file()}


def compare_outputs(a: str | os.PathLike, b: str | os.PathLike) -> dict:
    """``{"compared", "differ": [paths], "only_a": [...], "only_b": [...]}`` for two results folders."""
    da, db = output_digests(a), output_digests(b)
    shared = sorted(set(da) & set(db))
    return {"compared": len(shared), "differ": [p for p in shared if da[p] != db[p]],
            "only_a": sorted(set(da) - set(db)), "only_b": sorted(set(db) - set(da))}  # fmt: skip
