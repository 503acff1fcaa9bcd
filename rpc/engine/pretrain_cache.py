"""The pretrained backbone cached per machine, as torchvision caches downloaded weights.

Pretraining is the one stage every run of the synthetic benchmark waits for, and its result depends only on its
recipe, its code and the machine. So a finished pretraining is also kept in ``<cache>/pretrain/<key>/``
(``$RPC_CACHE_DIR`` or ``~/.cache/rpc-wsss``) and a later run with the same key (another results folder, another
clone, ``make run-seeds`` after ``make run``) copies it instead of training again. The key holds everything that
can change the weights: every ``PretrainConfig`` field (but the device, which the resolved device stands for), a
digest of every module of the package that pretraining imports (``rpc.utils.code_digest``: the corpus generator,
the normalisation constants, the backbone, ...), the torch, torchvision, numpy and Pillow versions, the device (CPU
model and flags, or the GPU), the thread count and ``ONEDNN_MAX_CPU_ISA``. A cached file is used only when its
SHA-256 matches the one recorded when it was stored. The copied files are the ones the first run wrote (weights
and report), so a run that takes them from the cache writes the same files as one that trains; its log says where
they came from. With
``amp: auto``, the precision the first run chose is in the report (``bf16``); it comes from the machine's own cached
timing (``rpc.utils.precision``). ``RPC_PRETRAIN_CACHE=0`` (or ``rpc pretrain --no-cache``) turns the cache off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch

from rpc.utils.code_digest import code_digest
from rpc.utils.io import atomic_path, write_json_atomic
from rpc.utils.precision import cache_root
from rpc.utils.provenance import device_name
from rpc.utils.workdir import settings_hash

logger = logging.getLogger(__name__)


def enabled() -> bool:
    return os.environ.get("RPC_PRETRAIN_CACHE", "1") not in ("0", "") and cache_root() is not None


def cache_key(cfg, device: torch.device) -> dict:
    """What the pretrained weights depend on (see the module docstring)."""
    import numpy
    import PIL
    import torchvision

    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": numpy.__version__,
                "pillow": PIL.__version__}  # fmt: skip
    return {"config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "device"},
            "code": code_digest("rpc.engine.pretrain"), **versions, "device": device_name(device),
            "threads": torch.get_num_threads(), "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "")}  # fmt: skip


def _folder(key: dict) -> Path:
    return cache_root() / "pretrain" / settings_hash(key)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(key: dict, out: str | os.PathLike) -> dict | None:
    """Copy the cached weights for ``key`` to ``out`` and return the cached report; None when there are none (or
    the cached file does not match its recorded digest: then it is not used)."""
    folder = _folder(key)
    try:
        entry = json.loads((folder / "entry.json").read_text())
        weights = folder / "backbone.pth"
        if entry.get("key") != key or _sha256(weights) != entry["sha256"]:
            logger.warning(f"{folder}: cached pretraining does not match its record; not used")
            return None
    except (OSError, ValueError, KeyError):
        return None
    with atomic_path(out) as tmp:
        shutil.copyfile(weights, tmp)
    logger.info(f"pretrained backbone from the machine's cache {folder} (same recipe, code and machine)")
    return entry["report"]


def store(key: dict, weights: str | os.PathLike, report: dict) -> None:
    """Keep a finished pretraining for later runs; a cache that cannot be written is only a warning."""
    folder = _folder(key)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "backbone.pth") as tmp:
            shutil.copyfile(weights, tmp)
        write_json_atomic(folder / "entry.json", {"key": key, "sha256": _sha256(folder / "backbone.pth"),
                                                  "report": report})  # fmt: skip
        logger.info(f"pretrained backbone kept in the machine's cache {folder}")
    except OSError as exc:
        logger.warning(f"pretraining not cached ({exc})")
