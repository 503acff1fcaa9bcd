"""``train_segmentation``: DeepLabv2 with mmseg's Runner on a prepared dataset + a mask folder.

Before training: the class count is taken from the dataset (the config's is replaced), every listed image must
have a mask, and mask values must lie in 0..C or 255. Periodic checkpoints go to ``work_dir`` (mmengine's
``last_checkpoint``); a rerun
resumes from there, unless that run had finished (then it starts afresh, ``rpc.engine.workdir``). The declared
result is ``out``: the final weights and the resolved config (as text), loadable with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rpc.segmentation.compat import ensure_mmseg

ensure_mmseg()

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import rpc.segmentation.dataset  # noqa: E402, F401  (registers PreparedSegDataset)
import rpc.segmentation.deeplabv2  # noqa: E402, F401  (registers DeepLabV2Head)
import rpc.segmentation.hooks  # noqa: E402, F401  (registers FiniteLossHook)
from rpc.data.index import DatasetIndex  # noqa: E402
from rpc.engine.checkpoint import save_checkpoint  # noqa: E402
from rpc.engine.workdir import mark_complete, start_work_dir  # noqa: E402
from rpc.segmentation.dataset import check_masks  # noqa: E402
from rpc.utils.io import DataError  # noqa: E402


def parse_options(items: list[str]) -> dict:
    """``["train_cfg.max_iters=100", ...]`` -> a dict for ``Config.merge_from_dict`` (mmengine's syntax)."""
    action = DictAction(option_strings=["--cfg-options"], dest="cfg_options")
    ns = type("NS", (), {})()
    action(None, ns, items)
    return ns.cfg_options


def load_config(path: str | os.PathLike, num_classes: int, options: list[str] | None = None) -> Config:
    """Load an mmseg config and apply ``options``. The class count always comes from the dataset: the decode
    head (and an auxiliary head, if any) is given ``num_classes`` (background included), whatever the file says,
    so one config serves VOC, COCO and any VOC-format folder with its own ``classes.txt``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: mmseg config not found")
    cfg = Config.fromfile(str(path))
    if options:
        cfg.merge_from_dict(parse_options(options))
    heads = [cfg.model.decode_head] + ([cfg.model.auxiliary_head] if cfg.model.get("auxiliary_head") else [])
    for head in heads:
        if head.num_classes != num_classes:
            print(f"{path}: {head.type}.num_classes {head.num_classes} -> {num_classes} (from the dataset)")
            head.num_classes = num_classes
    return cfg


def check_backbone_weights(weights: str | os.PathLike, depth: int) -> None:
    """mmengine loads a backbone checkpoint with ``strict=False`` and only warns about mismatches, so a ResNet-18
    file given to a ResNet-101 would leave it almost random: compare every backbone key and shape first."""
    import torch
    import torchvision

    from rpc.models.backbone import DEPTHS

    if depth not in DEPTHS:
        raise DataError(f"{weights}: the DeepLab backbone depth {depth} is not a torchvision ResNet depth")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    with torch.device("meta"):
        expected = getattr(torchvision.models, DEPTHS[depth])().state_dict()
    bad = [k for k, v in expected.items() if not k.startswith("fc.") and (k not in state or state[k].shape != v.shape)]
    if bad:
        raise DataError(f"{weights}: not a ResNet-{depth} backbone (e.g. {bad[0]} missing or of another shape); "
                        f"the DeepLab config's backbone depth must equal the pretrained one's")  # fmt: skip


def set_backbone_weights(cfg: Config, weights: str | os.PathLike) -> None:
    """Initialise the backbone from a torchvision-format state dict (e.g. the pretraining stage's output):
    mmseg's ``ResNet`` uses torchvision's key names, so ``init_cfg=Pretrained`` loads it (``fc`` is ignored)."""
    if not Path(weights).is_file():
        raise DataError(f"{weights}: backbone weights not found")
    check_backbone_weights(weights, int(cfg.model.backbone.depth))
    cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=str(weights))
    print(f"backbone init: {weights}")


def train_segmentation(
    config: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    split: str,
    mask_dir: str | os.PathLike | None,
    work_dir: str | os.PathLike,
    out: str | os.PathLike,
    options: list[str] | None = None,
    launcher: str = "none",
    backbone_weights: str | os.PathLike | None = None,
) -> dict:
    """Train on ``split`` with labels from ``mask_dir`` (None: the ground truth); write ``out``.
    ``backbone_weights``: a torchvision-format state dict for the backbone (None: what the config says)."""
    index = DatasetIndex.load(dataset_dir)
    cfg = load_config(config, index.num_classes, options)
    if backbone_weights is not None:
        set_backbone_weights(cfg, backbone_weights)
    names = index.names(split)
    if mask_dir is not None:
        check_masks(index, names, mask_dir)
    cfg.train_dataloader.dataset.update(dataset_dir=str(index.root), split=split,
                                        mask_dir=None if mask_dir is None else str(mask_dir))  # fmt: skip
    work_dir = start_work_dir(work_dir) if int(os.environ.get("RANK", "0")) == 0 else Path(work_dir)
    cfg.work_dir = str(work_dir)
    cfg.custom_hooks = [*cfg.get("custom_hooks", []), dict(type="FiniteLossHook")]
    cfg.resume = (work_dir / "last_checkpoint").is_file()
    cfg.launcher = launcher
    runner = Runner.from_cfg(cfg)
    runner.train()
    model = runner.model.module if hasattr(runner.model, "module") else runner.model
    if runner.rank == 0:
        meta = {"iterations": runner.iter, "split": split, "mask_dir": None if mask_dir is None else str(mask_dir)}
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_checkpoint(out, {"state_dict": state, "config": cfg.pretty_text,
                              "classes": json.dumps(list(index.classes)), "meta": json.dumps(meta)})  # fmt: skip
        mark_complete(work_dir, {"out": str(out), "iterations": runner.iter})
    return {"iterations": runner.iter, "resumed": cfg.resume, "images": len(names)}
