"""Work folders: where a stage keeps its partial results until it finishes, so an interrupted run resumes.

Snakemake deletes a job's declared outputs before it reruns the job, so anything a stage wants to keep across a
kill lives in ``work/``, outside them: training checkpoints, and the per-image files of the map, CRF and
prediction stages (moved into the declared output folder in one rename when the shard completes,
:func:`publish_dir`).

Each work folder records the settings it was started with (``SETTINGS``: a hash and the settings as JSON). A rerun
with other settings (another lr, another model file, other CRF parameters) starts afresh and says so, instead of
mixing two runs. A training that finishes writes ``COMPLETE``; a later run in that folder is a new training
(Snakemake reruns a finished training only when its inputs or parameters changed) and starts from scratch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from rpc.utils.io import DataError, remove_temporaries, write_text_atomic

MARKER = "COMPLETE"
SETTINGS = "SETTINGS"

logger = logging.getLogger(__name__)


def settings_hash(settings: dict) -> str:
    """A stable hash of JSON-able settings (key order does not matter)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_identity(path: str | os.PathLike) -> dict:
    """What identifies an input file or folder for resuming: name, size and modification time of every file
    (cheap; a retrained model or regenerated maps get new ones)."""
    path = Path(path)
    if not path.exists():
        return {}  # the stage reports the missing input itself, with its own message
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {str(p.relative_to(path) if path.is_dir() else p.name): [p.stat().st_size, p.stat().st_mtime_ns]
            for p in files}  # fmt: skip


def start_work_dir(path: str | os.PathLike, settings: dict | None = None) -> Path:
    """Create ``path`` for a run with ``settings`` and return it. Its content is kept (to resume) only if it
    holds an unfinished run with the same settings; otherwise it is emptied first, with a line saying why."""
    path = Path(path)
    digest = settings_hash(settings or {})
    reason = None
    if (path / MARKER).is_file():
        reason = "holds a finished run"
    elif path.is_dir() and any(path.iterdir()):
        stored = (path / SETTINGS).read_text().split("\n", 1)[0] if (path / SETTINGS).is_file() else None
        if stored != digest:
            reason = f"was started with other settings (hash {stored} != {digest})"
    if reason:
        logger.warning(f"{path} {reason}; starting afresh")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    if not (path / SETTINGS).is_file():
        write_text_atomic(path / SETTINGS, f"{digest}\n{json.dumps(settings or {}, sort_keys=True, default=str)}\n")
    return path


def clean_finished(root: str | os.PathLike, dry_run: bool = False) -> list[tuple[Path, int]]:
    """Remove the work folders under ``root`` whose run finished (``COMPLETE``): their result is in the declared
    output and a rerun would start afresh anyway. Unfinished ones (resume points) are kept. Returns
    ``[(folder, bytes)]`` of what was (or, with ``dry_run``, would be) removed."""
    removed = []
    for marker in sorted(Path(root).rglob(MARKER)):
        folder = marker.parent
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        removed.append((folder, size))
        if not dry_run:
            shutil.rmtree(folder)
    return removed


def mark_complete(path: str | os.PathLike, info: dict) -> None:
    write_text_atomic(Path(path) / MARKER, json.dumps(info) + "\n")


def publish_dir(work: str | os.PathLike, out: str | os.PathLike) -> None:
    """Move a finished folder to ``out`` in one rename (``out`` is replaced)."""
    work, out = Path(work), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        shutil.rmtree(out)
    try:
        os.replace(work, out)
    except OSError:  # another file system: copy, then remove
        shutil.copytree(work, out)
        shutil.rmtree(work)


OUTPUT_RECORD = ".rpc-settings"  # hidden: folder merges and image lookups skip it


def claim_output_dir(path: str | os.PathLike, settings: dict) -> Path:
    """An output folder written in place (no work folder): its files are reused (finished images skipped) only if
    it records the same ``settings``. A folder that holds files made with other settings, or files without a
    record, is refused with an error naming it: never silently mixed with, never deleted."""
    path = Path(path)
    digest = settings_hash(settings)
    record = path / OUTPUT_RECORD
    if path.is_dir() and any(p.name != OUTPUT_RECORD for p in path.iterdir()):
        stored = record.read_text().split("\n", 1)[0] if record.is_file() else None
        if stored != digest:
            made = f"other settings (hash {stored} != {digest})" if stored else "settings it does not record"
            raise DataError(f"{path}: holds files made with {made}; remove it or write to another folder (a rerun "
                            f"with the same settings resumes)")  # fmt: skip
    path.mkdir(parents=True, exist_ok=True)
    if not record.is_file():
        write_text_atomic(record, f"{digest}\n{json.dumps(settings, sort_keys=True, default=str)}\n")
    return path


@contextlib.contextmanager
def staged_outputs(outs: dict[str, str | os.PathLike], work: str | os.PathLike | None, settings: dict):
    """The folders a per-image stage writes into, ``{key: folder}``, published to ``outs[key]`` on success.

    With ``work``: ``work/<key>/`` (kept across kills and reruns with the same ``settings``, so finished images
    are skipped), each moved to its declared output when the block completes. Without: the outputs themselves,
    claimed for these settings (:func:`claim_output_dir`; resume then works only as long as nobody deletes them,
    and Snakemake does, before it reruns a job)."""
    if work is None:
        folders = {k: Path(v) for k, v in outs.items()}
        for f in folders.values():
            claim_output_dir(f, settings)
        yield folders
        return
    root = start_work_dir(work, settings)
    folders = {k: root / k for k in outs}
    for f in folders.values():
        f.mkdir(parents=True, exist_ok=True)
        remove_temporaries(f)  # a write cut by a kill: redone, not published
    yield folders
    for k, out in outs.items():
        publish_dir(folders[k], out)
    shutil.rmtree(root)
