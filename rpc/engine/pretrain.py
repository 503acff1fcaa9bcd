"""Supervised pretraining of a torchvision ResNet on the synthetic corpus (``rpc.data.corpus``): the offline
stand-in for ImageNet weights.

A plain classification recipe: the whole network trains (BatchNorm in training mode), softmax cross-entropy over
the corpus's classes, SGD with momentum and poly decay, random flips and shifted crops (pad 4). The corpus is
generated in memory (about 1.3 ms per 64 px image), so no data loader processes are needed.

Output: a torchvision state dict (``conv1``, ``bn1``, ``layer1``..``layer4``, ``fc``), loadable weights-only,
usable as ``model.weights=<path>`` for every classifier (``fc`` is dropped there) and as DeepLab's backbone
init (mmseg ``init_cfg=dict(type="Pretrained", checkpoint=<path>)``: mmseg's ResNet uses torchvision's key
names). A JSON report holds the held-out accuracy per epoch. Resumable per epoch from ``work_dir/last.pt``, only by a
run with the same settings (every ``PretrainConfig`` field but the device, and the resolved precision): another
recipe starts afresh (``rpc.utils.workdir``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from rpc.data.corpus import NUM_CLASSES, CorpusSpec, generate_corpus
from rpc.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from rpc.engine import pretrain_cache
from rpc.models.backbone import DEPTHS
from rpc.utils.checkpoint_file import load_checkpoint, save_checkpoint
from rpc.utils.code_digest import code_digest
from rpc.utils.device import pick_device
from rpc.utils.io import write_json_atomic
from rpc.utils.precision import decide_bf16, model_step
from rpc.utils.provenance import provenance
from rpc.utils.workdir import mark_complete, start_work_dir

logger = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    depth: int = 18
    size: int = 64  # corpus image side
    images_per_class: int = 100  # the defaults are the workflow's (workflow/schemas/config.schema.yaml)
    val_per_class: int = 10
    epochs: int = 6
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    seed: int = 0
    amp: str = "auto"  # auto | bf16 | none (rpc.utils.precision)
    device: str = "auto"
    # Intra-op threads on a CPU, whatever the job was given: the weights depend on the thread count (oneDNN splits
    # the reductions by thread), so it is part of the recipe; 0 = the job's own (OMP_NUM_THREADS).
    threads: int = 2

    def corpus(self) -> CorpusSpec:
        return CorpusSpec(self.size, self.images_per_class, self.val_per_class, self.seed)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> float32 ``(N, 3, H, W)`` with ImageNet mean/std."""
    x = torch.from_numpy(images).float()
    x = (x - torch.from_numpy(IMAGENET_MEAN)) / torch.from_numpy(IMAGENET_STD)
    return x.permute(0, 3, 1, 2).contiguous()


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random horizontal flip and a random shift by up to ``pad`` px (zero padding) per image, ``(N, 3, H, W)``."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None].expand(n, 3, h, w + 2 * pad)
    x = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :].expand(n, 3, h, w)
    return x.gather(3, cols)


@torch.no_grad()
def accuracy(model, x: torch.Tensor, y: torch.Tensor, device, amp: bool, batch: int = 256) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x[i : i + batch].to(device))
        correct += int((logits.argmax(1).cpu() == y[i : i + batch]).sum())
    model.train()
    return correct / len(x)


def _calibration_step(model, x: torch.Tensor, device):
    """``step(bf16)``: one forward/backward of a copy of ``model`` on ``x``, for ``amp: auto``."""
    x, y = x.to(device), torch.zeros(len(x), dtype=torch.long, device=device)
    return model_step(lambda: copy.deepcopy(model).train(),
                      lambda m, fmt: F.cross_entropy(m(x.contiguous(memory_format=fmt)).float(), y), device)


def pretrain_backbone(out: str | os.PathLike, work_dir: str | os.PathLike, cfg: PretrainConfig,
                      report: str | os.PathLike | None = None, cache: bool = True) -> dict:  # fmt: skip
    """Train a ResNet-``cfg.depth`` on the corpus; write its torchvision state dict to ``out`` and the report
    (``{"epochs": [{"epoch", "loss", "val_accuracy", "images_per_s"}], "val_accuracy", ...}``) to ``report``.
    ``cache``: take the weights from this machine's cache when the same recipe, code and machine made them before,
    and keep them there after training (``rpc.engine.pretrain_cache``; the files are the same either way)."""
    if cfg.depth not in DEPTHS:
        raise ValueError(f"pretrain depth must be one of {sorted(DEPTHS)}, got {cfg.depth}")
    device = pick_device(cfg.device)
    if device.type == "cpu" and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    key = pretrain_cache.cache_key(cfg, device) if cache and pretrain_cache.enabled() else None
    if key is not None and (cached := pretrain_cache.fetch(key, out)) is not None:
        if report:
            write_json_atomic(report, cached)
        return cached
    t_gen = time.perf_counter()
    train_x, train_y = (torch.as_tensor(a) for a in generate_corpus(cfg.corpus(), "train"))
    val_x, val_y = (torch.as_tensor(a) for a in generate_corpus(cfg.corpus(), "val"))
    train_x, val_x = to_tensor(train_x.numpy()), to_tensor(val_x.numpy())
    gen_s = time.perf_counter() - t_gen

    torch.manual_seed(cfg.seed)
    model = getattr(torchvision.models, DEPTHS[cfg.depth])(weights=None, num_classes=NUM_CLASSES).to(device)
    workload = {"stage": "pretrain", "code": code_digest(__name__), "depth": cfg.depth, "size": cfg.size,
                "batch": cfg.batch_size}  # fmt: skip
    amp = decide_bf16(cfg.amp, device, workload, _calibration_step(model, train_x[: cfg.batch_size], device))
    # resume only a run of the same recipe and resolved precision (another epochs, lr, size, depth, seed: afresh)
    settings = {**{k: v for k, v in dataclasses.asdict(cfg).items() if k != "device"}, "bf16": amp}
    work = start_work_dir(work_dir, settings)
    if amp:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(train_x) // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    history, start = [], 0
    last = work / "last.pt"
    if last.is_file():
        ckpt = load_checkpoint(last, map_location=device)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        start, history = int(ckpt["epoch"]), json.loads(ckpt["history"])
        logger.info(f"resumed from {last} after epoch {start}/{cfg.epochs}")
    model.train()
    for epoch in range(start, cfg.epochs):
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        order = torch.randperm(len(train_x), generator=gen)
        t0, losses = time.perf_counter(), []
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            for g in opt.param_groups:
                g["lr"] = cfg.lr * (1 - step / total) ** cfg.poly_power
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            x = augment(train_x[idx], gen).to(device)
            if amp:
                x = x.contiguous(memory_format=torch.channels_last)
            ctx = torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
            with ctx:
                logits = model(x)
            loss = F.cross_entropy(logits.float(), train_y[idx].to(device))
            if not torch.isfinite(loss):
                raise RuntimeError(f"pretraining diverged at step {step} (loss {loss.item()}); lower pretrain.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        rate = steps_per_epoch * cfg.batch_size / (time.perf_counter() - t0)
        acc = accuracy(model, val_x, val_y, device, amp)
        history.append({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4), "val_accuracy": acc,
                        "images_per_s": round(rate, 1)})  # fmt: skip
        print(json.dumps(history[-1]))
        save_checkpoint(last, {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                               "history": json.dumps(history)})  # fmt: skip
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_checkpoint(out, state)
    result = {"depth": cfg.depth, "classes": NUM_CLASSES, "train_images": len(train_x), "val_images": len(val_x),
              "val_accuracy": history[-1]["val_accuracy"] if history else None, "epochs": history,
              "corpus_generation_s": round(gen_s, 1), "bf16": amp, "provenance": provenance(device, amp),
              "config": dataclasses.asdict(cfg)}  # fmt: skip
    if report:
        write_json_atomic(report, result)
    mark_complete(work, {"out": str(out)})
    if key is not None:
        pretrain_cache.store(key, out, result)
    return result
