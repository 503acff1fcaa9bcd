"""A training's log as a declared result: the records of its work folder (which a resumed run appends to, and
`make clean-work` deletes) merged by step into ``train_log.json`` next to the model file."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from rpc.utils.io import write_json_atomic


def read_jsonl(paths: Iterable[str | os.PathLike]) -> list[dict]:
    """Every JSON object of the files in order; a line cut short by a kill is skipped."""
    records = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def publish_train_log(records: Iterable[dict], out: str | os.PathLike, drop: tuple[str, ...] = ()) -> list[dict]:
    """One record per ``step`` (a step logged again after a resume: the later record wins), in step order,
    without the keys in ``drop`` (timings that would make two identical runs' logs differ)."""
    by_step = {r["step"]: {k: v for k, v in r.items() if k not in drop} for r in records if "step" in r}
    merged = [by_step[s] for s in sorted(by_step)]
    write_json_atomic(out, merged)
    return merged
