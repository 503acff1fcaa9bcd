"""Checkpoints: atomic writes, weights-only loads, and the final model file read by later stages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from rpc.utils.io import DataError, atomic_path


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Write with ``torch.save`` to a temporary file, then rename (an interrupted write leaves no file). Saved
    through a file object, so the archive's inner folder name is torch's fixed one, not the random temporary
    name: the same payload gives the same bytes."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated / foreign file
        raise DataError(f"{path}: unreadable checkpoint ({exc})") from exc


def save_model(path: str | os.PathLike, model, model_config: dict, classes: list[str], meta: dict) -> None:
    """A final model file (classifier or DeepLab): state dict + its configuration, classes and metadata as JSON
    text, so a weights-only load suffices and reading it never runs code."""
    try:
        texts = {"config": json.dumps(model_config), "classes": json.dumps(classes), "meta": json.dumps(meta)}
    except TypeError as exc:  # e.g. a class object instead of a registry name in an mmengine config
        raise DataError(f"{path}: the model configuration holds a value that is not plain data ({exc})") from exc
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    save_checkpoint(path, {"state_dict": state, **texts})


def load_model(path: str | os.PathLike, map_location="cpu", with_meta: bool = False):
    """``(RPCModel in eval mode on ``map_location``, ModelConfig, class names)`` from a file written by
    ``save_model`` (and its metadata dict as a fourth item with ``with_meta``)."""
    from rpc.models.rpc import RPCModel, config_from_dict

    ckpt = load_checkpoint(path, map_location)
    try:
        cfg = config_from_dict({**json.loads(ckpt["config"]), "weights": "none"})
        classes = json.loads(ckpt["classes"])
        with torch.device("meta"):  # no random initialisation: every tensor comes from the file
            model = RPCModel(cfg)
        model.load_state_dict(ckpt["state_dict"], assign=True)
        left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if left:
            raise RuntimeError(f"no value in the file for {left[:3]}")
    except (KeyError, TypeError, RuntimeError) as exc:
        raise DataError(f"{path}: not an RPC model file ({exc})") from exc
    model = model.to(map_location).eval()
    if with_meta:
        return model, cfg, classes, json.loads(ckpt.get("meta") or "{}")
    return model, cfg, classes


def _unwrap(model):
    return model.module if hasattr(model, "module") else model
