"""Are two runs' outputs the same? Digests of every file under a results folder, for the determinism test, the
chaos run (``benchmarks/chaos.py``) and users comparing two runs (``python -m rpc compare-results A B``).

Files are compared byte for byte (maps, masks, model files and checkpoints are written reproducibly: fixed
archive dates and names), except JSON files, which are compared as data after dropping the timing fields (keys
ending in ``_s``: ``wall_s``, ``images_per_s``, ``corpus_generation_s``): how long a run took is not its result.
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


def file_digest(path: Path) -> str:
    if path.suffix == ".json":
        try:
            data = _without_timings(json.loads(path.read_text()))
            return "json:" + hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        except ValueError:
            pass  # not JSON after all: compared as bytes
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def output_digests(root: str | os.PathLike) -> dict[str, str]:
    """``{relative path: digest}`` of every file under ``root`` (hidden provenance records included)."""
    root = Path(root)
    return {str(p.relative_to(root)): file_digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


def compare_outputs(a: str | os.PathLike, b: str | os.PathLike) -> dict:
    """``{"compared", "differ": [paths], "only_a": [...], "only_b": [...]}`` for two results folders."""
    da, db = output_digests(a), output_digests(b)
    shared = sorted(set(da) & set(db))
    return {"compared": len(shared), "differ": [p for p in shared if da[p] != db[p]],
            "only_a": sorted(set(da) - set(db)), "only_b": sorted(set(db) - set(da))}  # fmt: skip
