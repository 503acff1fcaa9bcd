"""A trained DeepLab as mmseg's own tools expect it: an mmengine checkpoint (``{"meta", "state_dict"}``) and a
``.py`` config, so that ``mmseg.apis.init_model`` / ``inference_model`` and mmseg's ``tools/test.py`` load it.

The config imports ``rpc.segmentation.deeplabv2`` (``custom_imports``), which registers the DeepLabv2 head and,
first, the ``mmcv.ops`` stand-in that mmcv-lite needs (``rpc.segmentation.compat``). With mmcv-lite, run
``import rpc.segmentation.compat; rpc.segmentation.compat.ensure_mmseg()`` before importing ``mmseg`` yourself.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from rpc.segmentation.compat import ensure_mmseg

ensure_mmseg()

from rpc.segmentation.predict import load_segmenter  # noqa: E402
from rpc.utils.io import atomic_path, write_text_atomic  # noqa: E402


def export_mmseg(model_file: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """``out_dir/config.py`` and ``out_dir/checkpoint.pth`` from a ``train_segmentation`` model file."""
    model, cfg, classes, meta = load_segmenter(model_file, "cpu", with_meta=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.custom_imports = dict(imports=["rpc.segmentation.deeplabv2"], allow_failed_imports=False)
    cfg.model.backbone.init_cfg = None  # the weights are in the checkpoint
    cfg.dataset_meta = dict(classes=list(classes))
    if "test_pipeline" not in cfg:  # inference_model's pipeline: the whole image, as seg-predict at scale 1
        cfg.test_pipeline = [dict(type="LoadImageFromFile"), dict(type="PackSegInputs")]
    write_text_atomic(out_dir / "config.py", cfg.pretty_text)
    state = {"meta": {"dataset_meta": {"classes": list(classes)}, "iterations": meta.get("iterations")},
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}  # fmt: skip
    with atomic_path(out_dir / "checkpoint.pth") as tmp, open(tmp, "wb") as f:
        torch.save(state, f)
    return {"config": str(out_dir / "config.py"), "checkpoint": str(out_dir / "checkpoint.pth")}
