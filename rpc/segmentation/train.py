"""``train_segmentation``: DeepLabv2 with mmseg's Runner on a prepared dataset + a mask folder.

Before training: the class count is taken from the dataset (the config's is replaced), every listed image must
have a mask, and mask values must lie in 0..C or 255. The declared result is ``out``: the final weights and the
resolved config as JSON data (never code), loadable with ``weights_only=True``.

Work folder (``rpc.utils.workdir``): mmengine's periodic checkpoints (``iter_N.pth``) and ``last_checkpoint``.
A rerun resumes only if the folder was started with the same settings (:func:`segmentation_settings`: the
resolved config text, the mask folder and the backbone weights file, the process count) and has not finished;
otherwise it starts afresh and says so. mmengine's ``CheckpointHook`` deletes the oldest kept checkpoint before it
writes the new one, and writes neither atomically, so at least two are kept (a kill while saving leaves the
previous one) and the resume point is checked: ``last_checkpoint``'s file if it loads, else the newest
checkpoint that loads (:func:`find_resume_checkpoint`).

Under ``torchrun`` (``--launcher pytorch``) the process group is started here, before the work folder is touched:
rank 0 prepares the folder and picks the resume point, the other ranks wait for its decision. Without CUDA it is
gloo, and the DDP wrapper gets no ``device_ids`` (mmengine's defaults, nccl and ``device_ids=[LOCAL_RANK]``,
need GPUs).
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import re
from pathlib import Path

from rpc.segmentation.compat import ensure_mmseg

ensure_mmseg()

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import rpc.segmentation.dataset  # noqa: E402, F401  (registers PreparedSegDataset)
import rpc.segmentation.deeplabv2  # noqa: E402, F401  (registers DeepLabV2Head)
import rpc.segmentation.hooks  # noqa: E402, F401  (registers FiniteLossHook)
from rpc.data.index import DatasetIndex  # noqa: E402
from rpc.models.checkpoint import save_model  # noqa: E402
from rpc.segmentation.dataset import check_masks  # noqa: E402
from rpc.segmentation.precision import use_bf16, wants_bf16  # noqa: E402  (registers CPUBf16OptimWrapper)
from rpc.utils.distributed import dist_info, on_rank0  # noqa: E402
from rpc.utils.io import DataError  # noqa: E402
from rpc.utils.provenance import provenance, read_records  # noqa: E402
from rpc.utils.tensorboard import add_tensorboard_backend  # noqa: E402
from rpc.utils.train_log import publish_train_log, read_jsonl  # noqa: E402
from rpc.utils.workdir import file_identity, mark_complete, settings_hash, start_work_dir  # noqa: E402

logger = logging.getLogger(__name__)


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
            logger.info(f"{path}: {head.type}.num_classes {head.num_classes} -> {num_classes} (from the dataset)")
            head.num_classes = num_classes
    return cfg


def check_backbone_weights(weights: str | os.PathLike, depth: int) -> None:
    """mmengine loads a backbone checkpoint with ``strict=False`` and only warns about mismatches, so a ResNet-18
    file given to a ResNet-101 would leave it almost random: compare every backbone key and shape first."""
    import torch
    import torchvision

    from rpc.models.backbone import BACKBONE_FILE, DEPTHS
    from rpc.utils.checkpoint_file import load_checkpoint

    if depth not in DEPTHS:
        raise DataError(f"{weights}: the DeepLab backbone depth {depth} is not a torchvision ResNet depth")
    state = load_checkpoint(weights, expected=BACKBONE_FILE)
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
    logger.info(f"backbone init: {weights}")


def schedule_in_epochs(cfg: Config, epochs: float, n_images: int) -> int:
    """The schedule as ``epochs`` passes over a training split of ``n_images``: ``max_iters = ceil(epochs *
    n_images / batch)`` with the global batch (``train_dataloader.batch_size``: see :func:`split_global_batch`),
    and the last learning-rate scheduler (the poly decay) ends there; a warm-up before it keeps its length. The
    checkpoint interval becomes a quarter of the run. Returns ``max_iters``."""
    if epochs <= 0:
        raise DataError(f"segmentation epochs must be positive, got {epochs}")
    batch = int(cfg.train_dataloader.batch_size)
    iters = max(1, math.ceil(epochs * n_images / batch))
    schedulers = cfg.get("param_scheduler") or []
    schedulers = schedulers if isinstance(schedulers, list) else [schedulers]
    if schedulers and int(schedulers[-1].get("begin", 0)) >= iters:
        raise DataError(f"{epochs} epochs of {n_images} images are {iters} iterations, fewer than the warm-up "
                        f"({schedulers[-1].get('begin')}); give more epochs")  # fmt: skip
    cfg.train_cfg.max_iters = iters
    if schedulers:
        schedulers[-1]["end"] = iters
        cfg.param_scheduler = schedulers
    hooks = cfg.get("default_hooks") or {}
    if hooks.get("checkpoint"):
        hooks["checkpoint"]["interval"] = max(1, iters // 4)
    logger.info(f"schedule: {epochs} epochs of {n_images} images at batch {batch} = {iters} iterations")
    return iters


def split_global_batch(cfg: Config, world: int, source) -> int:
    """The config's ``train_dataloader.batch_size`` is the global batch, the same on 1 or N processes: each of
    ``world`` processes takes ``batch / world`` images a step, so batch, iterations and learning rate keep the
    schedule the config states. A batch that does not divide is an error naming ``source``. Returns the
    per-process batch."""
    batch = int(cfg.train_dataloader.batch_size)
    if batch % world:
        raise DataError(f"{source}: train_dataloader.batch_size {batch} is the global batch and does not divide over "
                        f"{world} processes; give a multiple of {world} (e.g. --cfg-options "
                        f"train_dataloader.batch_size={world * max(1, round(batch / world))})")  # fmt: skip
    cfg.train_dataloader.batch_size = batch // world
    if world > 1:
        logger.info(f"global batch {batch} = {world} processes x {batch // world}")
    return batch // world


MIN_KEPT_CHECKPOINTS = 2  # mmengine deletes the oldest before writing the newest: keep the previous one


def keep_two_checkpoints(cfg: Config) -> None:
    """``default_hooks.checkpoint.max_keep_ckpts``: at least :data:`MIN_KEPT_CHECKPOINTS` (or unlimited)."""
    hook = (cfg.get("default_hooks") or {}).get("checkpoint")
    if hook is not None and 0 < hook.get("max_keep_ckpts", -1) < MIN_KEPT_CHECKPOINTS:
        if dist_info()[1] == 0:
            logger.info(f"default_hooks.checkpoint.max_keep_ckpts {hook.max_keep_ckpts} -> {MIN_KEPT_CHECKPOINTS} (a "
                  f"kill while mmengine saves would otherwise leave no checkpoint to resume from)")  # fmt: skip
        hook.max_keep_ckpts = MIN_KEPT_CHECKPOINTS


def segmentation_settings(config_text: str, mask_dir, backbone_weights, world_size: int,
                          index: DatasetIndex | None = None, split: str | None = None) -> dict:  # fmt: skip
    """What a resumable DeepLab run must share with the run that started its work folder: the resolved config
    text (before work_dir, launcher and resume are set), the training labels (the pseudo-mask files; for the
    ground-truth run the listed images' ground-truth masks), the split list and image-label files, the backbone
    weights file (names, sizes and modification times: regenerated data or masks are new labels) and the process
    count (which splits the config's global batch)."""
    if mask_dir is not None:
        masks = {"dir": str(Path(mask_dir).resolve()), "files": settings_hash(file_identity(mask_dir))}
    elif index is not None:
        masks = {"ground_truth": settings_hash({n: file_identity(index.mask_path(n)) for n in index.names(split)})}
    else:
        masks = None
    dataset = None
    if index is not None:
        dataset = {"dir": str(index.root.resolve()), "list": file_identity(index.splits[split]),
                   "labels": file_identity(index.labels_file) if index.labels_file else None}  # fmt: skip
    backbone = None
    if backbone_weights is not None:
        backbone = {"file": str(backbone_weights), **file_identity(backbone_weights)}
    return {"config": config_text, "masks": masks, "dataset": dataset, "backbone": backbone,
            "world_size": world_size}  # fmt: skip


def _ends_like_a_zip(path: Path) -> bool:
    """Whether the file ends with a zip archive's end-of-central-directory record (torch checkpoints are zip
    archives, written front to back: a save cut short has none). Read errors (permissions, a network file system)
    propagate: they say nothing about the file and must not get it deleted."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 65558))  # the record (22 bytes) plus the longest archive comment
        return b"PK\x05\x06" in f.read()


def checkpoint_state(path: Path) -> str:
    """``ok`` (loads weights-only), ``truncated`` (provably cut short: no end of archive) or ``unloadable`` (a
    whole archive that does not load, e.g. a class the allow-list does not hold after an environment change)."""
    import torch

    if not _ends_like_a_zip(path):
        return "truncated"
    try:  # mmap: the structure is read and unpickled, the tensors are not
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return "ok"
    except OSError:
        raise
    except Exception:
        return "unloadable"


def find_resume_checkpoint(work_dir: str | os.PathLike) -> str | None:
    """The checkpoint to resume from: the one ``last_checkpoint`` names if it exists and loads, else the newest
    ``iter_N.pth`` / ``epoch_N.pth`` that loads (a kill while mmengine saved), else None. Only a checkpoint that is
    provably cut short is deleted; one that is whole but does not load is moved aside to ``<name>.unloadable``
    (kept for inspection, never resumed from), and a file that cannot be read at all stops the job with the error.
    A dangling ``last_checkpoint`` is removed. Each step says what it did."""
    work_dir = Path(work_dir)
    pointer = work_dir / "last_checkpoint"
    named = pointer.read_text().strip() if pointer.is_file() else ""
    if named and Path(named).is_file() and checkpoint_state(Path(named)) == "ok":
        return named
    why = f"names {named}, which {'does not load' if Path(named).is_file() else 'is missing'}" if named else "is empty"
    numbered = [(int(m[2]), p) for p in work_dir.iterdir() if (m := re.fullmatch(r"(iter|epoch)_(\d+)\.pth", p.name))]
    chosen = None
    for _, path in sorted(numbered, reverse=True):
        if chosen is not None:
            break
        state = checkpoint_state(path)
        if state == "ok":
            chosen = path
        elif state == "truncated":
            logger.warning(f"{path}: unreadable checkpoint (cut short: no end of archive); removed")
            path.unlink()
        else:
            aside = path.with_name(path.name + ".unloadable")
            logger.warning(f"{path}: a whole checkpoint that does not load (weights-only allow-list, torch version?); "
                  f"moved aside to {aside}, not resumed from")  # fmt: skip
            path.rename(aside)
    if pointer.is_file():
        if chosen is not None:
            logger.warning(f"{pointer} {why}; resuming from {chosen}, the newest checkpoint that loads")
        else:
            logger.warning(f"{pointer} {why} and no other checkpoint loads; starting afresh")
        pointer.unlink()
    return None if chosen is None else str(chosen)


def init_distributed(cfg: Config, launcher: str) -> tuple[int, int]:
    """Start the process group for ``launcher`` (``none``: nothing) and return ``(rank, world_size)``. Without
    CUDA: gloo, and the DDP wrapper without ``device_ids``, recorded in ``cfg`` for the Runner."""
    import torch
    from mmengine.dist import get_dist_info, init_dist

    if launcher == "none":
        return 0, 1
    dist_cfg = dict(cfg.get("env_cfg", {}).get("dist_cfg") or {})
    if not torch.cuda.is_available():
        if launcher != "pytorch":
            raise DataError(f"--launcher {launcher} needs GPUs; on CPU, run under torchrun with --launcher pytorch")
        dist_cfg["backend"] = "gloo"
        cfg.env_cfg = {**cfg.get("env_cfg", {}), "dist_cfg": dist_cfg}
        wrapper = cfg.get("model_wrapper_cfg") or dict(
            type="MMDistributedDataParallel", broadcast_buffers=False,
            find_unused_parameters=cfg.get("find_unused_parameters", False),
        )  # fmt: skip
        cfg.model_wrapper_cfg = {**wrapper, "device_ids": None}  # CPU modules: DDP without devices
        if not torch.distributed.is_initialized():
            timeout = dist_cfg.get("timeout")
            kwargs = {"timeout": datetime.timedelta(seconds=timeout)} if timeout else {}
            torch.distributed.init_process_group("gloo", **kwargs)
    elif not torch.distributed.is_initialized():
        init_dist(launcher, **dist_cfg)  # what the Runner would do, only earlier
    return get_dist_info()


def _training_masks_provenance(mask_dir) -> dict:
    """The record of the stages that made the pseudo masks (classifier, maps, ...), carried into the model file."""
    return {} if mask_dir is None else read_records([mask_dir])


def train_segmentation(
    config: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    split: str,
    *,
    mask_dir: str | os.PathLike | None,
    work_dir: str | os.PathLike,
    out: str | os.PathLike,
    options: list[str] | None = None,
    launcher: str = "none",
    backbone_weights: str | os.PathLike | None = None,
    amp: str = "auto",
    seed: int | None = None,
    deterministic: bool = False,
    tensorboard: bool = False,
    epochs: float | None = None,
) -> dict:
    """Train on ``split`` with labels from ``mask_dir`` (None: the ground truth); write ``out``.
    ``backbone_weights``: a torchvision-format state dict for the backbone (None: what the config says).
    ``seed``: mmengine's ``randomness.seed`` (initialisation, sampling, augmentation; None: the config's), so a
    run over several seeds includes DeepLab's own randomness; part of the resume settings. ``deterministic``: on a
    GPU, no cuDNN autotuning and mmengine's deterministic mode (CPU runs are deterministic without it).
    ``amp``: auto | bf16 | none (``rpc.segmentation.precision``; on CUDA auto means fp32); the precision it resolves
    to is a resume setting.
    ``tensorboard``: mmengine also writes TensorBoard events (rpc.utils.tensorboard); not a resume setting.
    ``epochs``: the schedule in passes over ``split`` (:func:`schedule_in_epochs`) instead of the config's
    iterations."""
    index = DatasetIndex.load(dataset_dir)
    cfg = load_config(config, index.num_classes, options)
    if backbone_weights is not None:
        set_backbone_weights(cfg, backbone_weights)
    names = index.names(split)
    if epochs is not None:
        schedule_in_epochs(cfg, epochs, len(names))
    check_masks(index, names, mask_dir)  # pseudo masks, or the ground truth (mask_dir None)
    cfg.train_dataloader.dataset.update(dataset_dir=str(index.root), split=split,
                                        mask_dir=None if mask_dir is None else str(mask_dir))  # fmt: skip
    if seed is not None:
        cfg.randomness = {**cfg.get("randomness", {}), "seed": int(seed)}
    if deterministic:  # GPU: no cuDNN autotuning (the runtime's cudnn_benchmark), deterministic algorithms
        cfg.env_cfg = {**cfg.get("env_cfg", {}), "cudnn_benchmark": False}
        cfg.randomness = {**cfg.get("randomness", {}), "deterministic": True}
    keep_two_checkpoints(cfg)
    cfg.custom_hooks = [*cfg.get("custom_hooks", []), dict(type="FiniteLossHook")]
    config_text = cfg.pretty_text  # the settings: before the launcher's and the precision's entries are added
    rank, world = init_distributed(cfg, launcher)
    split_global_batch(cfg, world, config)
    bf16 = on_rank0(lambda: wants_bf16(cfg, amp), world, rank)  # every rank follows rank 0's timing
    if bf16:
        use_bf16(cfg)

    def prepare() -> tuple[str, str | None]:  # rank 0 only: it may empty the folder
        settings = {**segmentation_settings(config_text, mask_dir, backbone_weights, world, index, split),
                    "bf16": bf16}  # fmt: skip
        folder = start_work_dir(work_dir, settings)
        logger.info(f"work folder {folder} (settings {settings_hash(settings)})")
        return str(folder), find_resume_checkpoint(folder)

    folder, resume_from = on_rank0(prepare, world, rank)  # the other ranks wait for rank 0's decision
    work_dir = Path(folder)
    cfg.work_dir = str(work_dir)
    cfg.resume = resume_from is not None
    if cfg.resume:
        cfg.load_from = resume_from
    cfg.launcher = launcher
    runner_cfg = cfg.copy()  # logging is the runner's alone: the model file's config stays the same without it
    if tensorboard:
        add_tensorboard_backend(runner_cfg)
    runner = Runner.from_cfg(runner_cfg)
    runner.train()
    if runner.rank == 0:
        meta = {"iterations": runner.iter, "split": split, "mask_dir": None if mask_dir is None else str(mask_dir),
                "provenance": {**_training_masks_provenance(mask_dir),
                               "deeplab": {**provenance(next(runner.model.parameters()).device, bf16),
                                           "processes": world}}}  # fmt: skip
        save_model(out, runner.model, cfg.to_dict(), list(index.classes), meta)  # the config as JSON data
        # mmengine's scalars, one folder per (resumed) run, oldest first; timings dropped
        scalars = sorted(work_dir.glob("*/vis_data/scalars.json"), key=lambda p: p.parent.parent.name)
        publish_train_log(read_jsonl(scalars), Path(out).with_name("train_log.json"), drop=("time", "data_time"))
        mark_complete(work_dir, {"out": str(out), "iterations": runner.iter})
    return {"iterations": runner.iter, "resumed": cfg.resume, "images": len(names), "bf16": bf16}
