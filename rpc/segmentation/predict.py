"""``predict_segmentation``: DeepLabv2 inference on a split, optional multi-scale + flip and CRF post-processing.

Per image: the whole image (no sliding window) at each scale and, optionally, flipped; softmax scores resized to
the image size and averaged; ``argmax`` -> ``out_dir/<name>.png``. With ``crf_dir``, the averaged scores are also
refined by the softmax-unary dense CRF (docs/method.md post-processing parameters) -> ``crf_dir/<name>.png``;
with ``scores_dir`` they are stored there instead (``<name>.npz``), for the CRF in a CPU job of its own
(``rpc.segmentation.refine.refine_predictions``: the same masks).
Images whose outputs exist and read back are skipped (resume); with a work folder they are kept there until the
split is done (``rpc.utils.workdir.staged_outputs``), so a killed job resumes under Snakemake too.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rpc.segmentation.compat import ensure_mmseg

ensure_mmseg()

from mmengine.config import Config  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

import rpc.segmentation.deeplabv2  # noqa: E402, F401  (registers DeepLabV2Head)
from rpc.data.index import DatasetIndex, read_image  # noqa: E402
from rpc.data.maps import is_complete  # noqa: E402
from rpc.data.palette import is_valid_mask, write_mask  # noqa: E402
from rpc.models.dense_crf import SEGMENTATION_CRF, CRFParams  # noqa: E402
from rpc.models.fold import fold_batchnorm  # noqa: E402
from rpc.segmentation.refine import refine_and_write, save_scores  # noqa: E402
from rpc.segmentation.stored_config import check_stored_config  # noqa: E402
from rpc.utils.checkpoint_file import SEGMENTATION_MODEL, load_checkpoint  # noqa: E402
from rpc.utils.device import pick_device  # noqa: E402
from rpc.utils.io import DataError  # noqa: E402
from rpc.utils.pool import run_bounded  # noqa: E402
from rpc.utils.progress import ImageProgress  # noqa: E402
from rpc.utils.provenance import provenance, write_record  # noqa: E402
from rpc.utils.shard import shard  # noqa: E402
from rpc.utils.workdir import file_identity, staged_outputs  # noqa: E402


def load_segmenter(path: str | os.PathLike, device="cpu", with_meta: bool = False, fold_bn: bool = False):
    """``(model in eval mode, mmengine Config, class names)`` from a file written by ``train_segmentation`` (and
    its metadata dict as a fourth item with ``with_meta``). ``fold_bn``: the frozen batch norms folded into their
    convolutions, for inference (``rpc.models.fold``)."""
    ckpt, cfg_dict, classes = read_segmenter(path)
    model, cfg = build_segmenter(ckpt, cfg_dict, device, fold_bn)
    if with_meta:
        return model, cfg, classes, json.loads(ckpt.get("meta") or "{}")
    return model, cfg, classes


def build_segmenter(ckpt: dict, cfg_dict: dict, device="cpu", fold_bn: bool = False):
    """``(model in eval mode with the file's weights, mmengine Config)`` from :func:`read_segmenter`'s parts."""
    cfg = Config(cfg_dict)
    cfg.model.backbone.init_cfg = None  # weights come from the file; never download here
    register_all_modules(init_default_scope=True)
    model = MODELS.build(cfg.model)
    model.load_state_dict(ckpt["state_dict"])
    model = model.to(device).eval()
    if fold_bn:
        fold_batchnorm(model)
    return model, cfg


def read_segmenter(path: str | os.PathLike) -> tuple[dict, dict, list[str]]:
    """``(checkpoint dict, stored mmseg config dict, class names)`` of a ``train_segmentation`` file, every part
    checked and nothing built: a file that is not such a model is a one-line ``DataError``."""
    ckpt = load_checkpoint(path, "cpu", SEGMENTATION_MODEL)
    try:
        cfg_dict, classes = json.loads(ckpt["config"]), json.loads(ckpt["classes"])
    except KeyError as exc:
        raise DataError(f"{path}: not a segmentation model file (missing {exc})") from exc
    except (json.JSONDecodeError, TypeError) as exc:  # e.g. Python text from an older version: never executed
        raise DataError(f"{path}: the stored config is not JSON data ({exc}); retrain with this version") from exc
    if isinstance(cfg_dict, dict) and {"num_stages", "method", "depth"} <= set(cfg_dict):
        raise DataError(f"{path}: a classifier model file (written by `python -m rpc train`), not a DeepLab model; "
                        f"give a segmentation model, results/<run>/segmentation/model.pt (`seg-train`'s --out)")
    if not isinstance(cfg_dict, dict) or not isinstance(cfg_dict.get("model"), dict):
        raise DataError(f"{path}: the stored config is not an mmseg config dict with a 'model' entry; expected a "
                        f"DeepLab model file written by `python -m rpc seg-train`")
    check_stored_config(cfg_dict, path)  # only registered type names: building it imports and runs nothing else
    return ckpt, cfg_dict, classes


@torch.inference_mode()
def class_probabilities(model, cfg, image: np.ndarray, scales=(1.0,), flip: bool = False) -> torch.Tensor:
    """``image (H, W, 3)`` uint8 RGB -> softmax scores ``(K, H, W)`` averaged over scales (and flips)."""
    pre = cfg.model.data_preprocessor
    dev = next(model.parameters()).device
    mean = torch.tensor(pre.mean, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=dev).view(1, 3, 1, 1)
    x = (torch.from_numpy(np.array(image)).to(dev).permute(2, 0, 1)[None].float() - mean) / std
    h, w = image.shape[:2]
    total = 0
    for s in scales:
        xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        batch = torch.cat([xs, xs.flip(-1)]) if flip else xs
        meta = [dict(img_shape=tuple(xs.shape[-2:]), ori_shape=(h, w))] * len(batch)
        logits = model.encode_decode(batch, meta)
        if flip:
            logits = torch.stack([logits[0], logits[1].flip(-1)])
        probs = F.interpolate(logits, (h, w), mode="bilinear", align_corners=False).softmax(1)
        total = total + probs.sum(0)
    return total / (len(scales) * (2 if flip else 1))


def predict_segmentation(
    model_file: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    split: str,
    out_dir: str | os.PathLike,
    *,
    crf_dir: str | os.PathLike | None = None,
    scores_dir: str | os.PathLike | None = None,
    scales=(1.0,),
    flip: bool = False,
    device: str = "auto",
    shard_index: int = 0,
    num_shards: int = 1,
    crf_params: CRFParams = SEGMENTATION_CRF,
    work_dir: str | os.PathLike | None = None,
    crf_workers: int = 1,
) -> dict:
    """Predictions of ``split`` (shard ``shard_index`` of ``num_shards``) -> ``out_dir``; with ``crf_dir`` their
    CRF refinement there, run in ``crf_workers`` processes beside the model's forwards (1: in this process; the
    masks are the same either way); with ``scores_dir`` the scores the CRF refines, for a later job. Returns
    ``{images, skipped, wall_s, images_per_s, crf_s}`` (``crf_s``: the total time inside the CRF, over all
    workers)."""
    dev = pick_device(device)
    model, cfg, classes, meta = load_segmenter(model_file, dev, with_meta=True, fold_bn=True)
    index = DatasetIndex.load(dataset_dir)
    index.require_classes(classes, model_file)
    outs = {"pred": out_dir} | ({"crf": crf_dir} if crf_dir else {}) | ({"scores": scores_dir} if scores_dir else {})
    settings = {"model": file_identity(model_file), "dataset": str(index.root), "split": split,
                "scales": list(scales), "flip": flip, "shard": [shard_index, num_shards],
                "crf": dataclasses.asdict(crf_params) if crf_dir else None}  # fmt: skip
    names = shard(index.names(split), shard_index, num_shards)
    with staged_outputs(outs, work_dir, settings) as folders:
        dirs = list(folders.values())
        for d in dirs:  # predictions run in fp32
            write_record(d, {**meta.get("provenance", {}), "predict": provenance(dev, False)})
        num_classes = index.num_classes

        def finished(n: str) -> bool:  # every output of the image written and readable
            return all(is_complete(d / f"{n}.npz") if key == "scores" else is_valid_mask(d / f"{n}.png", num_classes)
                       for key, d in folders.items())  # fmt: skip

        progress = ImageProgress(names, finished, f"predict {split}")
        crf_s = [0.0]

        def predicted(name: str) -> tuple[np.ndarray, np.ndarray]:
            image = index.read_image(name)
            probs = class_probabilities(model, cfg, image, scales, flip).cpu().numpy()
            write_mask(folders["pred"] / f"{name}.png", probs.argmax(0).astype(np.uint8))
            if "scores" in folders:
                save_scores(folders["scores"] / f"{name}.npz", probs)
            return image, probs

        def refined(name: str, seconds: float) -> None:
            crf_s[0] += seconds
            progress.update()

        with progress:
            if crf_dir:  # the CRF of earlier images in crf_workers processes while the model predicts the next
                tasks = ((n, (*predicted(n), crf_params, folders["crf"] / f"{n}.png")) for n in progress.todo)
                run_bounded(refine_and_write, tasks, crf_workers, refined)
            else:
                for name in progress.todo:
                    predicted(name)
                    progress.update()
    return progress.result(crf_s=crf_s[0])


def segment_images(model_file: str | os.PathLike, images: list[str | os.PathLike], out_dir: str | os.PathLike, *,
                   scales=(1.0,), flip: bool = False, crf: bool = False, device: str = "auto") -> dict:  # fmt: skip
    """A user's own images (no dataset, no masks) -> ``out_dir/<stem>.png`` palette label PNGs (class indices of
    the model's classes, VOC's palette). Also what the PASCAL VOC evaluation server takes for the ``test`` split:
    ``--out results/VOC2012/Segmentation/comp6_test_cls``."""
    paths = [Path(p) for p in images]
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise DataError(f"two images would both be written as {dup}.png: give files with distinct names")
    dev = pick_device(device)
    model, cfg, classes = load_segmenter(model_file, dev, fold_bn=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with ImageProgress(stems, lambda s: False, "segment") as progress:
        for path in paths:
            image = read_image(path)
            probs = class_probabilities(model, cfg, image, scales, flip).cpu().numpy()
            if crf:
                refine_and_write(image, probs, SEGMENTATION_CRF, out_dir / f"{path.stem}.png")
            else:
                write_mask(out_dir / f"{path.stem}.png", probs.argmax(0).astype(np.uint8))
            progress.update()
    return {**progress.result(), "classes": list(classes), "out": str(out_dir)}
