"""Checkpoint files: atomic writes and weights-only loads with one-line errors for what is not a checkpoint.

Layer 0 (no model code), so that the backbone loader and the model files use the same loading rules.
"""

from __future__ import annotations

import codecs
import os
import pickle
import re
from pathlib import Path

import torch

from rpc.utils.io import DataError, atomic_path


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Write with ``torch.save`` to a temporary file, then rename (an interrupted write leaves no file). Saved
    through a file object, so the archive's inner folder name is torch's fixed one, not the random temporary
    name: the same payload gives the same bytes."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)


#: what a file given to :func:`load_checkpoint` should be, when the caller does not say
ANY_CHECKPOINT = "a model file or checkpoint written by `python -m rpc train`, `pretrain` or `seg-train`"
#: what :func:`load_model` reads
CLASSIFIER_MODEL = "a classifier model file written by `python -m rpc train` (its --out)"
#: what the DeepLab commands (seg-predict, export-mmseg) read
SEGMENTATION_MODEL = "a DeepLab model file written by `python -m rpc seg-train` (results/<run>/segmentation/model.pt)"

_ZIP = b"PK\x03\x04"  # torch.save's format: a zip archive
_PICKLE = b"\x80"  # a pickle of protocol 2 or later
# torch's legacy (pre-zip) format: pickles that start with its magic number
_LEGACY = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2).removesuffix(pickle.STOP)
_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def load_checkpoint(path: str | os.PathLike, map_location="cpu", expected: str = ANY_CHECKPOINT) -> dict:
    """``torch.load(path, weights_only=True)``: tensors and plain data, never code. Weights-only loading is never
    switched off, so a file it refuses is a ``DataError`` of one line naming the file, what it is (missing, an
    empty file, text, pickled Python objects, a zip archive cut short, ...) and what was ``expected`` instead."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found; expected {expected}")
    try:
        what = _not_a_checkpoint(path)
        if what is None:
            return torch.load(path, map_location=map_location, weights_only=True)
    except OSError as exc:
        what = f"unreadable ({exc.strerror or _first_line(exc)})"
    except pickle.UnpicklingError as exc:  # torch's text for it advises switching weights-only off: never
        found = _UNSAFE_GLOBAL.search(str(exc))
        what = "holds pickled Python objects that are not allowed" + (f" ({found[1]})" if found else "")
        what += "; only tensors and plain data are loaded, never code"
    except Exception as exc:
        what = f"not a torch checkpoint ({_first_line(exc)})"
    raise DataError(f"{path}: {what}; expected {expected}")


def _not_a_checkpoint(path: Path) -> str | None:
    """What ``path`` is when its bytes alone show that it is no torch checkpoint; None when it may be one."""
    with open(path, "rb") as f:
        head = f.read(4096)
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - 65558))  # the zip's end record (22 bytes) plus the longest archive comment
        tail = f.read()
    if size == 0:
        return "an empty file (0 bytes), not a torch checkpoint"
    if head.startswith(_ZIP):
        return None if b"PK\x05\x06" in tail else "a torch checkpoint cut short (its zip archive has no end)"
    if head.startswith(_LEGACY):
        return None
    if head.startswith(_PICKLE):
        return "a plain Python pickle, not a torch checkpoint: pickled Python objects are not loaded"
    if _is_text(head, whole=len(head) == size):
        return "a text file, not a torch checkpoint"
    return "not a torch checkpoint (binary data that is neither a zip archive nor torch's legacy format)"


def _is_text(head: bytes, whole: bool) -> bool:
    """``head`` (a file's first bytes; ``whole``: all of it) is UTF-8 text: printable characters and whitespace."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=whole)
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\n\r\f\v" for c in text)


def _first_line(exc: Exception) -> str:
    """An exception's text as part of a one-line message: its first line, without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:200]
