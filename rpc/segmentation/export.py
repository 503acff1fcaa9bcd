"""A trained DeepLab as mmseg's own tools expect it: an mmengine checkpoint (``{"meta", "state_dict"}``) and a
``.py`` config, so that ``mmseg.apis.init_model`` / ``inference_model`` and mmseg's test loop
(``Runner.from_cfg(cfg).test()``, what mmseg's ``tools/test.py`` runs) load it.

The config imports this package's registering modules (``custom_imports``: the DeepLabv2 head, the dataset, the
hooks the training config names) and carries a test loop over the dataset it was trained on (``--dataset`` /
``--split`` choose another): ``test_dataloader`` (the whole image, ground-truth masks), ``test_evaluator``
(mIoU) and ``test_cfg``. With mmcv-lite (no compiled ops), run ``import rpc.segmentation.compat;
rpc.segmentation.compat.ensure_mmseg()`` before importing ``mmseg`` yourself: mmseg imports ``mmcv.ops`` before
any ``custom_imports`` are read.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from rpc.segmentation.compat import ensure_mmseg

ensure_mmseg()

from rpc.segmentation.predict import load_segmenter  # noqa: E402
from rpc.segmentation.stored_config import OWN_REGISTERING_MODULES  # noqa: E402
from rpc.utils.io import DataError, atomic_path, write_text_atomic  # noqa: E402


def export_mmseg(model_file: str | os.PathLike, out_dir: str | os.PathLike, dataset: str | os.PathLike | None = None,
                 split: str = "val") -> dict:  # fmt: skip
    """``out_dir/config.py`` and ``out_dir/checkpoint.pth`` from a ``train_segmentation`` model file; the test loop
    runs on ``split`` of ``dataset`` (default: the prepared dataset the model was trained on)."""
    model, cfg, classes, meta = load_segmenter(model_file, "cpu", with_meta=True)
    dataset = dataset or cfg.get("train_dataloader", {}).get("dataset", {}).get("dataset_dir")
    if not dataset:
        raise DataError(f"{model_file}: the model file names no training dataset; give --dataset")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.custom_imports = dict(imports=list(OWN_REGISTERING_MODULES), allow_failed_imports=False)
    cfg.model.backbone.init_cfg = None  # the weights are in the checkpoint
    cfg.dataset_meta = dict(classes=list(classes))
    # inference_model's pipeline and the test loop's: the whole image, as seg-predict at scale 1
    cfg.test_pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"), dict(type="PackSegInputs")]
    cfg.test_dataloader = dict(
        batch_size=1, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=False),
        dataset=dict(type="PreparedSegDataset", dataset_dir=str(dataset), split=split, mask_dir=None,
                     pipeline=cfg.test_pipeline),
    )  # fmt: skip
    cfg.test_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])
    cfg.test_cfg = dict(type="TestLoop")
    # the training's resume state and folders mean nothing here: load the exported weights, log beside them
    cfg.resume, cfg.load_from = False, str((out_dir / "checkpoint.pth").resolve())
    cfg.work_dir, cfg.launcher = str((out_dir / "work").resolve()), "none"
    write_text_atomic(out_dir / "config.py", cfg.pretty_text)
    state = {"meta": {"dataset_meta": {"classes": list(classes)}, "iterations": meta.get("iterations")},
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}  # fmt: skip
    with atomic_path(out_dir / "checkpoint.pth") as tmp, open(tmp, "wb") as f:
        torch.save(state, f)
    return {"config": str(out_dir / "config.py"), "checkpoint": str(out_dir / "checkpoint.pth")}
