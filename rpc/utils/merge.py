"""Gathering the shards of a per-image stage into one folder, with their provenance records merged."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from rpc.utils.io import DataError, normal_permissions
from rpc.utils.provenance import read_records, write_record


def merge_dirs(inputs: list[str | os.PathLike], out: str | os.PathLike) -> int:
    """Gather the files of several folders (shards) into ``out``: hard links where possible, else copies.
    Built in a temporary folder and renamed into place; the same file name in two inputs is an error. Hidden files
    are not copied; the inputs' provenance records (``rpc.utils.provenance``) are merged into one."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    normal_permissions(tmp)
    try:
        count = 0
        for d in map(Path, inputs):
            if not d.is_dir():
                raise DataError(f"{d}: folder to merge not found")
            for f in sorted(d.iterdir()):
                if f.name.startswith(".") or not f.is_file():
                    continue
                target = tmp / f.name
                if target.exists():
                    raise DataError(f"{f}: the same file name is in another input folder")
                try:
                    os.link(f, target)
                except OSError:
                    shutil.copy2(f, target)
                count += 1
        records = read_records(inputs)
        if records:
            write_record(tmp, records)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        return count
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
