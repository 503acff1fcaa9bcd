"""Atomic file writing and small readers shared by every stage.

Every result file is written to a temporary name in the destination folder and renamed into place, so an
interrupted stage never leaves a truncated file under the final name. The files and folders made this way get the
permissions any normal file gets (0666 / 0777 minus the umask), not the private 0600 / 0700 of ``tempfile``: on a
shared cluster the group can read the results.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """Bad input data: the message names the file and what is wrong with it."""


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return mask


def normal_permissions(path: str | os.PathLike) -> None:
    """Give a file made by ``tempfile`` the mode ``open()`` would have given it (a folder: ``mkdir``'s)."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_umask())


def is_temporary(path: str | os.PathLike) -> bool:
    """A file of :func:`atomic_path` that a killed process left behind (``.<stem>.<random>.tmp<suffix>``)."""
    name = Path(path).name
    return name.startswith(".") and ".tmp" in name


def remove_temporaries(folder: str | os.PathLike) -> int:
    """Delete what killed writers left in ``folder``; returns how many."""
    stale = [p for p in Path(folder).iterdir() if p.is_file() and is_temporary(p)] if Path(folder).is_dir() else []
    for p in stale:
        p.unlink()
    return len(stale)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    The temporary file keeps the destination's suffix so that writers that infer the format from it
    (PIL, numpy) work unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        normal_permissions(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; it becomes ``path`` if the block succeeds (an earlier
    ``path`` is replaced only then). A failed block leaves nothing under ``path`` and removes the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        normal_permissions(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old.tmp"))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_npz_atomic(path: str | os.PathLike, compress: bool = False, **arrays: np.ndarray) -> None:
    """Write an ``.npz`` atomically (object arrays are refused: no pickle), deflated with ``compress`` (what
    ``np.savez_compressed`` writes) or stored. The archive is what numpy writes, except that every member carries a
    fixed date (numpy stamps the current time), so equal arrays give equal bytes: outputs of two runs can be
    compared by digest."""
    import zipfile

    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, mode="w", compression=method, allowZip64=True) as zf:
        for key, value in arrays.items():
            value = np.asanyarray(value)
            if value.dtype == object:
                raise TypeError(f"array {key!r} has dtype object; refusing to pickle")
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, value, allow_pickle=False)
    write_bytes_atomic(path, buf.getvalue())


def check_image_id(name: str, where: str) -> str:
    """An image id is a file name stem, used to build paths: one with a path separator, ``.`` or ``..`` would
    read or write outside its folder, so it is refused (``where``: the file and line it came from)."""
    if "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        raise DataError(f"{where}: image id {name!r} is not a plain file name (path separators and . / .. are refused)")
    return name


def read_list(path: str | os.PathLike) -> list[str]:
    """Read a split list: one image name per line (the whole line); blank lines and ``#`` comments skipped. A line
    holding a space, an id listed twice (it would count twice in every score and collide in every output folder)
    or one that is not a plain file name (:func:`check_image_id`) is an error naming the file and lines."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split list not found")
    names, seen = [], {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            if len(line.split()) > 1:
                raise DataError(f"{path}:{number}: {line!r} is not one image id (ids are whole lines, no spaces)")
            name = check_image_id(line, f"{path}:{number}")
            if name in seen:
                raise DataError(f"{path}: image id {name!r} listed twice (lines {seen[name]} and {number})")
            seen[name] = number
            names.append(name)
    if not names:
        raise DataError(f"{path}: split list is empty")
    return names


def write_list(path: str | os.PathLike, names: list[str]) -> None:
    write_text_atomic(path, "".join(f"{n}\n" for n in names))
