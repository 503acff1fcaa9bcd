"""What produced a number: the resolved precision, threads, torch version and device of a stage, recorded with its
output (model files' metadata, work-folder settings, a hidden record in per-image output folders) and carried into
the scores and the summary, so two numbers that differ can be traced to the settings that differ.

A per-image stage writes :data:`RECORD` into its output folder: its own entry and the entries of the stages it
read (e.g. the maps carry the classifier's). Folder merges and image lookups skip hidden files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from rpc.utils.device import cpu_identity
from rpc.utils.io import write_json_atomic

RECORD = ".provenance.json"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = cpu_identity()
    return f"{cpu['model'] or 'cpu'} ({' '.join(cpu['flags'])}; {os.cpu_count()} cores)"


def provenance(device: torch.device, bf16: bool) -> dict:
    """One stage's entry: ``{"precision": "bf16" | "fp32", "threads", "torch", "device", "onednn_max_isa"}``."""
    return {"precision": "bf16" if bf16 else "fp32", "threads": torch.get_num_threads(), "torch": torch.__version__,
            "device": device_name(device), "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "")}  # fmt: skip


def write_record(folder: str | os.PathLike, entries: dict) -> None:
    """``folder/.provenance.json`` = ``{stage: entry}`` (this stage's and those it read)."""
    write_json_atomic(Path(folder) / RECORD, entries)


def read_records(folders) -> dict:
    """The records of one or several folders (the shards of one run), merged: ``{stage: entry}``, or
    ``{stage: [entries]}`` where shards disagree. Folders without a record contribute nothing."""
    merged: dict = {}
    for folder in folders:
        path = Path(folder) / RECORD
        if not path.is_file():
            continue
        for stage, entry in json.loads(path.read_text()).items():
            if stage not in merged:
                merged[stage] = entry
            elif merged[stage] != entry:
                seen = merged[stage] if isinstance(merged[stage], list) else [merged[stage]]
                merged[stage] = seen + ([entry] if entry not in seen else [])
    return merged


def summary_line(entries: dict) -> str:
    """``classifier bf16 x1, maps bf16 x1, ... on <device>, torch <v>`` for a table cell."""
    parts, devices, torches = [], set(), set()
    for stage, entry in entries.items():
        for e in entry if isinstance(entry, list) else [entry]:
            if not isinstance(e, dict):
                continue
            if "imported" in e:  # another method's maps (rpc import-maps): no device or precision of ours
                parts.append(f"{stage} imported ({e['imported']})")
                continue
            parts.append(f"{stage} {e.get('precision')} x{e.get('threads')}")
            devices.add(e.get("device"))
            torches.add(e.get("torch"))
    if not parts:
        return "-"
    return f"{', '.join(parts)}; {' / '.join(sorted(d for d in devices if d))}; torch {' / '.join(sorted(torches))}"
