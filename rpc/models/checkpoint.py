"""The final model file read by later stages (checkpoint loading rules: ``rpc.utils.checkpoint_file``)."""

from __future__ import annotations

import json
import os

import torch

from rpc.utils.checkpoint_file import CLASSIFIER_MODEL, load_checkpoint, save_checkpoint
from rpc.utils.io import DataError


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

    ckpt = load_checkpoint(path, map_location, CLASSIFIER_MODEL)
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

