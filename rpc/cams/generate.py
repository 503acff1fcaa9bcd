"""``make_rs_cams``: multi-scale + flip inference of the trained classifier (docs/method.md, "Localisation maps").

Per image: for each scale, the image and its flip go through the model together (flips fused inside the model;
consecutive images of equal size share the batch); each scale's map is upsampled bilinearly to the image size;
scales are summed; each channel is max-normalised. Stored as ``<name>.npz`` (no pickle, see ``rpc.data.maps``):
``keys`` (int16: 0 and the present classes), ``cams`` (float16 ``(len(keys), H, W)``) and, optionally,
``stage_cams`` (float16 ``(K, len(keys), H, W)``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader

from rpc.data.datasets import MultiScaleInferenceSet
from rpc.data.index import DatasetIndex
from rpc.data.maps import is_complete, label_keys, save_cams
from rpc.data.pyramid import device_pyramid
from rpc.models.checkpoint import load_model
from rpc.models.fold import fold_batchnorm
from rpc.models.rpc import config_to_dict
from rpc.utils.code_digest import code_digest
from rpc.utils.device import pick_device
from rpc.utils.precision import decide_precision_and_layout, model_step
from rpc.utils.progress import ImageProgress
from rpc.utils.provenance import provenance, write_record
from rpc.utils.shard import shard
from rpc.utils.workdir import file_identity, staged_outputs

DEFAULT_SCALES = (1.0, 0.5, 1.5, 2.0)


def _max_normalise(x: torch.Tensor) -> torch.Tensor:
    return x / (x.amax(dim=(-2, -1), keepdim=True) + 1e-5)


def by_size(index: DatasetIndex, names: list[str]) -> list[str]:
    """``names`` grouped by image size (from the file headers, nothing decoded), so that images of one size come
    one after another and share batches: a folder of many sizes (VOC, COCO, a user's own) otherwise runs at
    batch 1. Within a size the order is kept; sizes in order of first appearance."""
    first: dict[tuple[int, int], int] = {}
    sizes = {}
    for name in names:
        with Image.open(index.image_path(name)) as im:
            sizes[name] = im.size
        first.setdefault(sizes[name], len(first))
    return sorted(names, key=lambda n: first[sizes[n]])  # stable: the split's order within a size


MAX_AUTO_LOADERS = 4  # loader processes `--workers auto` gives a GPU at most (more gained little: docs/speed.md)


def loader_workers(setting: int | str, dev: torch.device) -> int:
    """Data-loading processes for the maps. ``auto``: none on a CPU (its cores compute the maps; a loader would
    compete with them); on a GPU one per CPU thread beyond the first, at least one and at most
    ``MAX_AUTO_LOADERS``, so that decoding and the multi-scale resizing of the next images overlap the GPU's work."""
    if setting == "auto":
        return 0 if dev.type == "cpu" else min(MAX_AUTO_LOADERS, max(1, torch.get_num_threads() - 1))
    if isinstance(setting, str) and not setting.isdigit():
        raise ValueError(f"loader workers must be auto or a number, got {setting!r}")
    return int(setting)


def _calibration_step(model, size: tuple[int, int], batch_size: int, dev, num_classes: int):
    """``step(bf16, channels_last)``: one map forward of ``batch_size`` random images (each with its flip) at
    ``size``, for the precision and layout decisions."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2 * batch_size, 3, *size, generator=g).to(dev)
    labels = torch.ones(batch_size, num_classes, device=dev)
    return model_step(lambda: model, lambda m, fmt: m.maps(x.contiguous(memory_format=fmt), labels), dev,
                      backward=False)  # fmt: skip


def _same_size_batches(items, batch_size: int):
    """Group consecutive loader items of equal image size into lists of at most ``batch_size``."""
    batch = []
    for item in items:
        if batch and (len(batch) == batch_size or tuple(item["size"]) != tuple(batch[0]["size"])):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def pyramid_on_device(setting: str, dev: torch.device) -> bool:
    """Where the scale pyramid is built. ``auto``: on a GPU (one upload of the decoded image instead of 15 float32
    copies, ``rpc.data.pyramid``), on the host for a CPU (PIL's resize, the reference: there is nothing to upload);
    ``device`` | ``host`` force it."""
    if setting not in ("auto", "device", "host"):
        raise ValueError(f"pyramid must be auto, device or host, got {setting!r}")
    return setting == "device" or (setting == "auto" and dev.type == "cuda")


def _scale_batches(batch: list[dict], dev, scales) -> Iterator[torch.Tensor]:
    """Per scale the ``(2B, 3, h, w)`` input on ``dev``: the host pyramid's arrays joined and uploaded, or the
    decoded images uploaded once and the pyramid built there."""
    if "image" in batch[0]:
        yield from device_pyramid(torch.stack([item["image"] for item in batch]).to(dev, non_blocking=True), scales)
    else:
        for s in range(len(scales)):
            yield torch.cat([item["scales"][s] for item in batch]).to(dev, non_blocking=True)


@torch.inference_mode()
def _infer_batch(model, batch: list[dict], dev, amp: bool, save_stages: bool, channels_last: bool, scales) -> None:
    """Maps for images of one size: per scale one forward of ``(2B, 3, h, w)`` (each image with its flip)."""
    labels = torch.stack([item["label"] for item in batch]).to(dev)
    size = tuple(batch[0]["size"])
    final_sum = stage_sum = None
    for x in _scale_batches(batch, dev, scales):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            final, per_stage = model.maps(x, labels)  # (B, C+1, h, w), [(B, C+1, h, w)] * K
        up = F.interpolate(final.float(), size, mode="bilinear", align_corners=False)
        final_sum = up if final_sum is None else final_sum + up
        if save_stages:
            st = torch.stack(per_stage, 1).float().flatten(0, 1)  # (B*K, C+1, h, w)
            up = F.interpolate(st, size, mode="bilinear", align_corners=False).unflatten(0, (len(batch), -1))
            stage_sum = up if stage_sum is None else stage_sum + up
    for b, item in enumerate(batch):
        keys = label_keys(item["label"].numpy())
        idx = torch.from_numpy(keys).to(dev)
        cams = _max_normalise(final_sum[b, idx]).cpu().numpy()
        stages = _max_normalise(stage_sum[b][:, idx]).cpu().numpy() if save_stages else None
        save_cams(item["out"], keys, cams, stages)


def _precision(amp: str, model, cfg, index: DatasetIndex, split: str, batch_size: int, dev) -> tuple[bool, bool]:
    """``(bf16, channels_last)`` (``rpc.utils.precision.decide_precision_and_layout``), timed on the size of the
    split's first image (at scale 1): the same decision for every shard of the split and for a resumed shard,
    whatever images are left to do."""
    with Image.open(index.image_path(index.names(split)[0])) as im:
        size = im.size[::-1]
    workload = {"stage": "maps", "code": code_digest(__name__), "model": config_to_dict(cfg), "size": list(size),
                "batch": batch_size}  # fmt: skip
    step = _calibration_step(model, size, batch_size, dev, cfg.num_classes)
    return decide_precision_and_layout(amp, dev, workload, step)


def make_rs_cams(
    model_path: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    split: str,
    out_dir: str | os.PathLike,
    *,
    shard_index: int = 0,
    num_shards: int = 1,
    scales=DEFAULT_SCALES,
    save_stages: bool = False,
    device: str = "auto",
    num_workers: int | str = "auto",
    amp: str = "auto",
    batch_size: int = 4,
    work_dir: str | os.PathLike | None = None,
    fold_bn: bool = True,
    pyramid: str = "auto",
) -> dict:
    """Write maps for shard ``shard_index`` of ``num_shards`` of the split; returns ``{images, skipped, wall_s,
    images_per_s, bf16}``. ``amp``: auto | bf16 | none (``rpc.utils.precision``); ``num_workers``: see
    :func:`loader_workers`. Images are grouped by size (:func:`by_size`) and consecutive images of equal size share
    a batch (``batch_size`` images, each with its flip). With ``work_dir`` the maps are written there and moved to
    ``out_dir`` when the shard is complete (``rpc.utils.workdir.staged_outputs``); complete maps found there (or in
    ``out_dir`` without it) are skipped, truncated ones redone. ``fold_bn``: the backbone's batch norms folded into
    their convolutions (``rpc.models.fold``; the same maps within float rounding, one pass less per layer).
    ``pyramid``: where the scales and flips are built, :func:`pyramid_on_device`."""
    dev = pick_device(device)
    on_device = pyramid_on_device(pyramid, dev)
    model, cfg, classes, meta = load_model(model_path, map_location=dev, with_meta=True)
    if fold_bn:
        fold_batchnorm(model)
    index = DatasetIndex.load(dataset_dir)
    index.require_classes(classes, model_path)
    amp, channels_last = _precision(amp, model, cfg, index, split, batch_size, dev)
    settings = {"model": file_identity(model_path), "dataset": str(index.root), "split": split,
                "shard": [shard_index, num_shards], "scales": list(scales), "stages": save_stages,
                "bf16": amp, "pyramid": "device" if on_device else "host"}  # fmt: skip
    names = shard(index.names(split), shard_index, num_shards)
    with staged_outputs({"maps": out_dir}, work_dir, settings) as folders:
        maps = folders["maps"]
        entry = {**provenance(dev, amp), "pyramid": settings["pyramid"]}
        write_record(maps, {**meta.get("provenance", {}), "maps": entry})
        progress = ImageProgress(names, lambda n: is_complete(maps / f"{n}.npz"), f"maps {shard_index}/{num_shards}")
        todo = by_size(index, progress.todo)
        model = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        loader = DataLoader(MultiScaleInferenceSet(index, todo, scales, decoded_only=on_device), batch_size=None,
                            num_workers=loader_workers(num_workers, dev), pin_memory=dev.type == "cuda")
        with progress:
            for batch in _same_size_batches(loader, batch_size):
                for item in batch:
                    item["out"] = maps / f"{item['name']}.npz"
                _infer_batch(model, batch, dev, amp, save_stages, channels_last, scales)
                progress.update(len(batch))
    return progress.result(bf16=amp, channels_last=channels_last, pyramid="device" if on_device else "host")
