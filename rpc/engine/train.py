"""Classifier training (docs/method.md "Training"): SGD + poly, 10x lr on new layers, gradient clipping, resumable.

Runs on CPU or CUDA, single process or under ``torchrun`` (DDP; gloo on CPU): each of W processes takes
``batch_size / W`` images of the same global batch, so the effective batch size and learning rate stay as
configured. The steps are the same computation as in one process: the backbone's BatchNorm uses running
statistics, augmentation depends only on ``(seed, epoch, image)``, and the BatchNorm layers that do use batch
statistics (the SFA attention's) compute them over the global batch (:class:`GlobalBatchNorm2d`).

Work folder layout: ``last.pt`` (latest checkpoint, atomically replaced), ``metrics.jsonl`` (one JSON object per
log interval), ``SETTINGS`` (``rpc.utils.workdir``). A rerun with the same work folder resumes from ``last.pt``
only if it was started with the same settings (:func:`classifier_settings`: model, schedule, data, initial
weights) and has not finished; otherwise it starts afresh and says so. The final model goes to ``out`` only when
training completes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from rpc.data.datasets import ClassificationTrainSet
from rpc.data.index import DatasetIndex
from rpc.models.checkpoint import save_model
from rpc.models.rpc import ModelConfig, RPCModel, config_to_dict
from rpc.utils.checkpoint_file import load_checkpoint, save_checkpoint
from rpc.utils.code_digest import code_digest
from rpc.utils.device import make_deterministic, pick_device
from rpc.utils.distributed import dist_info, on_rank0
from rpc.utils.precision import decide_precision_and_layout, model_step
from rpc.utils.provenance import provenance
from rpc.utils.tensorboard import ScalarWriter, require_tensorboard
from rpc.utils.train_log import publish_train_log, read_jsonl
from rpc.utils.workdir import file_identity, mark_complete, settings_hash, start_work_dir

OPTIMIZERS = ("paper", "sipe_code")
CLIP_SCOPES = ("stage", "model")

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Defaults: the paper / SIPE recipe for VOC and COCO (the synthetic config shrinks sizes and epochs)."""

    split: str = "train_aug"
    batch_size: int = 16  # global batch (all processes together)
    epochs: int = 5
    lr: float = 0.1  # backbone; new layers get lr * new_layer_lr_mult
    new_layer_lr_mult: float = 10.0
    # paper: SGD with `momentum` (0.9, as the paper states) | sipe_code: SGD as SIPE's code builds it
    # (PolyOptimizerSGD passes weight_decay as SGD's third positional argument, which is momentum: momentum 1e-4
    # = weight_decay, and weight_decay 1e-4 per parameter group); `momentum` is then not used.
    optimizer: str = "paper"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    clip_grad: float = 1.0
    # stage: each stage network's gradient norm clipped on its own (SIPE clips its one network; RPC's stages share
    # nothing: docs/method.md, section 0) | model: one norm over every parameter
    clip_grad_scope: str = "stage"
    crop: int = 512
    long_side: tuple[int, int] = (320, 640)
    seed: int = 15
    num_workers: int = 4
    log_interval: int = 10
    checkpoint_interval: int = 200  # steps
    amp: str = "auto"  # auto (bf16 where measured faster: rpc.utils.precision) | bf16 | none
    # auto: bf16 and GPU runs in channels-last, fp32 on a CPU in the layout a timed step shows faster | on | off
    channels_last: str = "auto"
    # torch.compile the training forward (inductor): faster steps after a compilation that pays only on long
    # trainings (docs/speed.md; python -m benchmarks.studies.compile), so off by default
    compile: bool = False
    # GPU runs: deterministic algorithms only (torch.use_deterministic_algorithms, no cuDNN benchmarking); slower.
    # CPU runs are deterministic for a given thread count without it.
    deterministic: bool = False
    device: str = "auto"  # auto | cpu | cuda
    max_steps: int | None = None  # stop (with a checkpoint) after this many steps: for tests and time limits

    def __post_init__(self):
        self.long_side = tuple(self.long_side)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"train.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.clip_grad_scope not in CLIP_SCOPES:
            raise ValueError(f"train.clip_grad_scope must be one of {CLIP_SCOPES}, got {self.clip_grad_scope!r}")


# TrainConfig fields that do not change the trained weights: a rerun that differs only in them resumes
NOT_RESULT_FIELDS = ("num_workers", "log_interval", "checkpoint_interval", "max_steps", "device", "compile")


class TrainingDiverged(RuntimeError):
    pass


def classifier_settings(dataset_dir, index: DatasetIndex, model_cfg: ModelConfig, cfg: TrainConfig) -> dict:
    """What a resumable classifier run must share with the run that started its work folder: the model
    configuration, the training recipe (less :data:`NOT_RESULT_FIELDS`), the dataset (folder, split list and
    labels file) and the initial weights file, if any (name, size, modification time)."""
    train = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_RESULT_FIELDS}
    weights = model_cfg.weights
    if weights not in (None, "none", "imagenet") and Path(weights).is_file():
        weights = {"file": str(weights), **file_identity(weights)}
    split_list = index.splits.get(cfg.split)
    dataset = {
        "dir": str(Path(dataset_dir).resolve()),
        "split": cfg.split,
        "list": file_identity(split_list) if split_list is not None else None,
        "labels": file_identity(index.labels_file),
    }
    return {"model": config_to_dict(model_cfg), "train": train, "dataset": dataset, "weights": weights}


class _SumAcrossRanks(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient (each rank's input feeds every rank's loss)."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        torch.distributed.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(torch.nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the global batch over all DDP processes (mean,
    then the biased variance, each by one differentiable all-reduce), as one process with the whole batch would
    compute them; running statistics are updated the same way. Works with gloo on CPU (torch's SyncBatchNorm
    needs a GPU). State dict and eval mode: those of BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
            return super().forward(x)
        xf = x.float()
        count = torch.full((1,), float(xf.numel() // xf.shape[1]), device=x.device)
        total = _SumAcrossRanks.apply(torch.cat([xf.sum((0, 2, 3)), count]))
        n = total[-1].detach()
        mean = total[:-1] / n
        centred = xf - mean[None, :, None, None]
        var = _SumAcrossRanks.apply((centred * centred).sum((0, 2, 3))) / n
        out = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1).clamp(min=1), alpha=m)  # unbiased
        return out.to(x.dtype)


def use_global_batch_norm(model: torch.nn.Module) -> int:
    """Make every BatchNorm2d that uses batch statistics in training mode (after ``model.train()``) a
    :class:`GlobalBatchNorm2d` (same parameters and buffers). The backbone's frozen BatchNorm stays as is.
    Returns how many were changed."""
    model.train()
    changed = 0
    for m in model.modules():
        if type(m) is torch.nn.BatchNorm2d and m.training:
            m.__class__ = GlobalBatchNorm2d
            changed += 1
    return changed


def finite_on_all_ranks(loss: torch.Tensor, world: int) -> bool:
    """Whether ``loss`` is finite on every process. Under DDP all ranks must agree before one of them stops:
    a rank that raised alone would leave the others waiting in the next gradient all-reduce until the
    timeout. One all-reduce of a 0/1 flag per step."""
    bad = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0], device=loss.device)
    if world > 1:
        torch.distributed.all_reduce(bad)
    return bad.item() == 0


def global_mean(values: dict[str, torch.Tensor], world: int) -> dict[str, float]:
    """Each value averaged over the processes (one all-reduce): with equal per-process batches, the value of the
    global batch for losses that are means over their batch."""
    vec = torch.stack([v.detach().float().reshape(()) for v in values.values()])
    if world > 1:
        torch.distributed.all_reduce(vec)
        vec /= world
    return dict(zip(values, vec.tolist(), strict=True))


def poly_lr(base: float, step: int, total: int, power: float) -> float:
    return base * (1 - step / total) ** power


def epoch_batches(n: int, batch: int, seed: int, epoch: int) -> list[list[int]]:
    """The global batches of one epoch: a permutation fixed by ``(seed, epoch)``, last partial batch dropped."""
    order = np.random.default_rng([seed, epoch, 7]).permutation(n)
    return [order[i : i + batch].tolist() for i in range(0, n - batch + 1, batch)]


def _setup(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """``(world, rank, device)``: the process group under torchrun (nccl on GPUs, gloo on CPUs), this rank's
    device, and the check that every process gets the same share of the global batch."""
    world, rank, local_rank = dist_info()
    if cfg.deterministic:
        make_deterministic()
    device = pick_device(cfg.device, local_rank)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if cfg.batch_size % world:
        raise ValueError(f"train.batch_size {cfg.batch_size} is not divisible by the {world} processes")
    return world, rank, device


def calibration_step(model: RPCModel, cfg: TrainConfig, device: torch.device, world: int):
    """``step(bf16, channels_last)``: one forward/backward of a copy of ``model`` on a random batch of this rank's
    size, for ``amp`` and ``channels_last`` auto (:func:`rpc.utils.precision.decide_precision_and_layout`); the
    model itself is left untouched."""
    n, c = cfg.batch_size // world, model.cfg.num_classes
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, cfg.crop, cfg.crop, generator=g).to(device)
    y = (torch.rand(n, c, generator=g) < 0.3).float().to(device)
    y[:, 0] = 1.0  # every image has a class
    valid = torch.ones(n, cfg.crop, cfg.crop, device=device)
    return model_step(lambda: copy.deepcopy(model).train(),
                      lambda m, fmt: m.losses(m(x.contiguous(memory_format=fmt), y, valid), y)["total"],
                      device)  # fmt: skip


def build_model(model_cfg: ModelConfig, cfg: TrainConfig, device: torch.device, world: int, rank: int = 0):
    """``(model, bf16 autocast?, channels-last?)`` on ``device``; every module's initial weights are keyed by
    ``(train.seed, module)`` (``rpc.models.seeding``). ``amp`` and
    ``channels_last`` auto are decided by measurement on rank 0 (cached per machine; every rank follows it)."""
    torch.manual_seed(cfg.seed)
    model = RPCModel(model_cfg, seed=cfg.seed).to(device)  # initial weights keyed by (seed, module)
    workload = {"stage": "classifier", "code": code_digest(__name__), "model": config_to_dict(model_cfg),
                "crop": cfg.crop, "batch": cfg.batch_size // world}  # fmt: skip
    amp, channels_last = on_rank0(lambda: decide_precision_and_layout(
        cfg.amp, device, workload, calibration_step(model, cfg, device, world), cfg.channels_last), world, rank)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if world > 1:
        use_global_batch_norm(model)  # BatchNorm statistics over the global batch, as in one process
    return model, amp, channels_last


def optimizer_momentum(cfg: TrainConfig) -> float:
    """SGD's momentum under ``train.optimizer``: ``paper`` -> ``train.momentum``; ``sipe_code`` ->
    ``train.weight_decay``, as SIPE's ``PolyOptimizerSGD`` ends up with (``SGD.__init__(params, lr, weight_decay)``
    fills the ``momentum`` slot), i.e. 1e-4: plain SGD for all practical purposes."""
    return cfg.weight_decay if cfg.optimizer == "sipe_code" else cfg.momentum


def build_optimizer(model: RPCModel, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with the backbone at ``lr`` and the new layers at ``lr * new_layer_lr_mult`` (``base_lr`` per group,
    decayed by :func:`poly_lr`), weight decay ``train.weight_decay`` in both groups, momentum by
    :func:`optimizer_momentum`."""
    backbone, new = model.param_groups()
    wd = cfg.weight_decay
    return torch.optim.SGD(
        [{"params": backbone, "lr": cfg.lr, "base_lr": cfg.lr, "weight_decay": wd},
         {"params": new, "lr": cfg.lr * cfg.new_layer_lr_mult, "base_lr": cfg.lr * cfg.new_layer_lr_mult,
          "weight_decay": wd}],
        lr=cfg.lr, momentum=optimizer_momentum(cfg), weight_decay=wd,
    )  # fmt: skip


def resume(last: Path, model: RPCModel, opt: torch.optim.Optimizer, cfg: TrainConfig, device) -> int:
    """Load ``last.pt`` if there is one (the work folder's settings already match); returns the step to go on."""
    if not last.is_file():
        return 0
    ckpt = load_checkpoint(last, map_location=device)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    for g, base in zip(opt.param_groups, (cfg.lr, cfg.lr * cfg.new_layer_lr_mult), strict=True):
        g["base_lr"] = base  # the configured lr wins over the one stored in the checkpoint
    return int(ckpt["step"])


def train_step(ddp_model, model: RPCModel, opt, batch: dict, step: int, total: int, cfg: TrainConfig, run) -> dict:
    """One SGD step on this rank's share of a global batch; returns the losses. Every rank stops together on a
    non-finite loss (:class:`TrainingDiverged`). ``run``: device, world, rank, amp, channels_last, last."""
    for g in opt.param_groups:
        g["lr"] = poly_lr(g["base_lr"], step, total, cfg.poly_power)
    x = batch["image"].to(run.device, non_blocking=True)
    if run.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = batch["label"].to(run.device)
    ctx = torch.autocast(run.device.type, dtype=torch.bfloat16) if run.amp else contextlib.nullcontext()
    with ctx:
        outputs = ddp_model(x, y, batch["valid"].to(run.device))
    losses = model.losses(outputs, y)
    if not finite_on_all_ranks(losses["total"].detach(), run.world):
        raise TrainingDiverged(
            f"non-finite loss at step {step} on at least one of {run.world} process(es) (this one, rank "
            f"{run.rank}: { {k: v.item() for k, v in losses.items()} }); "
            f"the last good checkpoint is kept in {run.last}; lower train.lr or check the data"
        )
    opt.zero_grad(set_to_none=True)
    losses["total"].backward()
    clip_gradients(model, cfg.clip_grad, cfg.clip_grad_scope)
    opt.step()
    return losses


def clip_gradients(model: RPCModel, max_norm: float, scope: str) -> list[float]:
    """Clip the gradient norm at ``max_norm``, per stage network (``stage``: each stage is clipped as if trained
    alone) or over the whole model (``model``); returns the norms before clipping, one per group."""
    groups = [list(s.parameters()) for s in model.stages] if scope == "stage" else [list(model.parameters())]
    return [float(torch.nn.utils.clip_grad_norm_(params, max_norm)) for params in groups]


class MetricsLog:
    """Rank 0's ``metrics.jsonl`` and progress bar: every ``log_interval`` steps the global batch's losses."""

    def __init__(self, work: Path, rank: int, start: int, stop_at: int, tensorboard: bool = False):
        self.rank, self.t0, self.seen, self.last = rank, time.perf_counter(), 0, {}
        self.file = (work / "metrics.jsonl").open("a") if rank == 0 else None
        self.board = ScalarWriter(work / "tensorboard") if tensorboard and rank == 0 else None
        self.bar = tqdm(total=stop_at, initial=start, desc="train", disable=rank != 0, dynamic_ncols=True)

    def step(self, step: int, epoch: int, images: int, losses: dict, lr: float, due: bool, world: int) -> None:
        self.seen += images
        self.bar.update(1)
        if not due:
            return
        logged = global_mean(losses, world)  # a collective: every rank takes part
        if self.rank == 0:
            rate = self.seen / (time.perf_counter() - self.t0)
            self.last = {"step": step, "epoch": epoch, **{k: round(v, 5) for k, v in logged.items()},
                         "images_per_s": round(rate, 2), "lr": lr}  # fmt: skip
            self.file.write(json.dumps(self.last) + "\n")
            self.file.flush()
            if self.board:
                self.board.write(step, self.last, prefix="classifier/")
            self.bar.write(" ".join(f"{k}={v}" for k, v in self.last.items()))

    def close(self) -> None:
        self.bar.close()
        if self.file:
            self.file.close()
        if self.board:
            self.board.close()


def train_classifier(
    dataset_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    out: str | os.PathLike,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    tensorboard: bool = False,
) -> dict:
    """Train; returns a summary dict (steps, images/s, final losses). Resumes from ``work_dir/last.pt``.
    ``tensorboard``: also write the logged records to ``work_dir/tensorboard/`` (rpc.utils.tensorboard)."""
    if tensorboard:
        require_tensorboard()
    world, rank, device = _setup(cfg)
    index = DatasetIndex.load(dataset_dir)
    if model_cfg.num_classes != index.num_classes - 1:
        model_cfg = dataclasses.replace(model_cfg, num_classes=index.num_classes - 1)
    model, amp, channels_last = build_model(model_cfg, cfg, device, world, rank)
    # the resolved precision is part of the settings: a run resumes only in the precision it started with
    settings = {**classifier_settings(dataset_dir, index, model_cfg, cfg), "bf16": amp}
    # rank 0 alone prepares the folder (it may empty it); the others wait, then read last.pt
    work = Path(on_rank0(lambda: str(start_work_dir(work_dir, settings)), world, rank))
    data = ClassificationTrainSet(index, cfg.split, cfg.long_side, cfg.crop, cfg.seed)
    steps_per_epoch = len(data) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"split {cfg.split} has {len(data)} images, fewer than one batch of {cfg.batch_size}")
    total = steps_per_epoch * cfg.epochs
    if rank == 0:
        logger.info(f"work folder {work} (settings {settings_hash(settings)})")
        logger.info(f"model config: {json.dumps(config_to_dict(model_cfg))}")
    opt = build_optimizer(model, cfg)
    last = work / "last.pt"
    step = resume(last, model, opt, cfg, device)
    if step and rank == 0:
        logger.info(f"resumed from {last} at step {step}/{total}")
    ddp_model = model if world == 1 else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)  # fmt: skip
    if cfg.compile:  # the forward only; checkpoints and the final model come from `model` itself
        ddp_model = torch.compile(ddp_model)
    run = SimpleNamespace(device=device, world=world, rank=rank, amp=amp, channels_last=channels_last, last=last)

    def checkpoint():
        if rank == 0:
            save_checkpoint(last, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step})

    stop_at = total if cfg.max_steps is None else min(total, cfg.max_steps)
    log = MetricsLog(work, rank, step, stop_at, tensorboard)
    model.train()
    try:
        while step < stop_at:
            epoch, skip = divmod(step, steps_per_epoch)
            data.set_epoch(epoch)
            batches = [b[rank::world] for b in epoch_batches(len(data), cfg.batch_size, cfg.seed, epoch)[skip:]]
            loader = DataLoader(data, batch_sampler=batches, num_workers=cfg.num_workers,
                                pin_memory=device.type == "cuda")  # fmt: skip
            for batch in loader:
                if step >= stop_at:
                    break
                losses = train_step(ddp_model, model, opt, batch, step, total, cfg, run)
                step += 1
                due = step % cfg.log_interval == 0 or step == stop_at
                log.step(step, epoch, batch["image"].shape[0] * world, losses, opt.param_groups[0]["lr"], due, world)
                if step % cfg.checkpoint_interval == 0:
                    checkpoint()
        checkpoint()
        if step >= total and rank == 0:
            meta = {"steps": step, "train": {k: (list(v) if isinstance(v, tuple) else v)
                                             for k, v in dataclasses.asdict(cfg).items()},
                    "provenance": {"classifier": {**provenance(device, amp), "processes": world}}}  # fmt: skip
            save_model(out, model, config_to_dict(model_cfg), list(index.classes), meta)
            log.close()
            publish_train_log(read_jsonl([work / "metrics.jsonl"]), Path(out).with_name("train_log.json"),
                              drop=("images_per_s",))  # fmt: skip
            mark_complete(work, {"out": str(out), "steps": step})
    finally:
        log.close()
    elapsed = time.perf_counter() - log.t0
    # the last logged losses (``total`` is the total loss), then the run's own numbers
    return {**log.last, "step": step, "total_steps": total,
            "images_per_s": log.seen / elapsed if elapsed else math.nan}  # fmt: skip
