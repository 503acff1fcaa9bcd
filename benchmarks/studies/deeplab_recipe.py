"""Choosing the demo's DeepLab recipe without looking at `val`: DeepLab trained on the ground-truth masks of the
default benchmark's `train_aug`, scored on a *tuning split* generated apart (the same generator, another seed, so
none of its images is in `train_aug` or `val`), with and without the CRF post-processing.

    python -m benchmarks.studies.deeplab_recipe --backbone results/pretrain/backbone.pth --candidates base ep5 ...
        ->  benchmarks/out/deeplab_recipe.json   (per candidate: tune mIoU, + CRF, training wall time)

A candidate is an mmseg config written on top of the embedded default's
(config/mmseg/deeplabv2_r18-d8_1xb8-5ep_synthetic-128x128.py) plus the backbone's initialisation; see CANDIDATES.
`--val` also scores `val` (for the report, once the recipe is chosen).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from benchmarks.common import OUT, REPO, write_result
from rpc.data.synthetic import SyntheticSpec, generate_dataset, tuning_spec
from rpc.data.voc import prepare_voc

BASE = REPO / "config" / "mmseg" / "deeplabv2_r18-d8_1xb8-5ep_synthetic-128x128.py"
def _schedule(iters: int, warmup: int) -> str:
    poly = f"dict(type='PolyLR', power=0.9, eta_min=0.0, begin={warmup}, end={iters}, by_epoch=False)"
    if not warmup:
        return f"param_scheduler = [{poly}]"
    linear = f"dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end={warmup})"
    return f"param_scheduler = [{linear}, {poly}]"


def candidate_config(folder: Path, name: str, iters: int, lr: float, warmup: int = 0, stride16: bool = False,
                     batch: int = 8, clip: float | None = None) -> Path:  # fmt: skip
    lines = [f"_base_ = [{str(BASE)!r}]", f"train_cfg = dict(type='IterBasedTrainLoop', max_iters={iters})",
             f"optim_wrapper = dict(optimizer=dict(lr={lr})" + (f", clip_grad=dict(max_norm={clip})" if clip else "")
             + ")", _schedule(iters, warmup), f"train_dataloader = dict(batch_size={batch})",
             f"default_hooks = dict(checkpoint=dict(interval={max(iters // 2, 1)}))"]  # fmt: skip
    if stride16:  # output stride 16: layer4 dilated only (3x fewer FLOPs in layers 3-4 at 128 px)
        lines.append("model = dict(backbone=dict(strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)))")
    path = folder / f"{name}.py"
    path.write_text("\n".join(lines) + "\n")
    return path


# name: (iterations, lr, warmup, output stride 16, batch, gradient clip, initial backbone)
CANDIDATES = {
    "base": (100, 0.025, 0, False, 8, None, "config"),
    "it400": (400, 0.025, 0, False, 8, None, "config"),
    "it400_os16": (400, 0.025, 0, True, 8, None, "config"),
    "pre_it400_lr01_wu": (400, 0.01, 40, False, 8, 10.0, "pretrained"),
    "pre_it400_lr025_wu": (400, 0.025, 40, False, 8, 10.0, "pretrained"),
    "pre_it200_lr01_wu": (200, 0.01, 20, False, 8, 10.0, "pretrained"),
    "pre_it200_lr01_wu_os16": (200, 0.01, 20, True, 8, 10.0, "pretrained"),
    "pre_it400_lr01_wu_os16": (400, 0.01, 40, True, 8, 10.0, "pretrained"),
    "it800_os16": (800, 0.025, 0, True, 8, None, "config"),
    # second round: the 5-epoch recipe (it400, 81 on the tuning split) costs 4x the old one; cheaper ones
    "it250": (250, 0.025, 0, False, 8, None, "config"),
    "it250_lr05": (250, 0.05, 0, False, 8, None, "config"),
    "it300": (300, 0.025, 0, False, 8, None, "config"),
    "b4_it500": (500, 0.025, 0, False, 4, None, "config"),
    "pre_it800_lr01_wu_os16": (800, 0.01, 80, True, 8, 10.0, "pretrained"),
}


def _score(index, split: str, pred: Path) -> float:
    from rpc.evaluation.masks import evaluate_mask_dir

    return 100 * evaluate_mask_dir(index, split, pred)["miou"]


def run_candidate(name: str, a, main_index, tune_index, folder: Path) -> dict:
    from rpc.models.dense_crf import SEGMENTATION_CRF
    from rpc.segmentation.predict import predict_segmentation
    from rpc.segmentation.train import train_segmentation

    iters, lr, warmup, stride16, batch, clip, init = CANDIDATES[name]
    config = candidate_config(folder, name, iters, lr, warmup, stride16, batch, clip)
    work = folder / name
    t0 = time.perf_counter()
    train_segmentation(config, main_index.root, "train_aug", mask_dir=None, work_dir=work / "work",
                       out=work / "model.pt", backbone_weights=a.backbone if init == "pretrained" else None,
                       amp=a.amp, seed=a.seed)  # fmt: skip
    train_s = time.perf_counter() - t0
    result = {"iterations": iters, "lr": lr, "warmup": warmup, "output_stride": 16 if stride16 else 8,
              "batch": batch, "clip": clip, "init": init, "train_wall_s": round(train_s, 1)}  # fmt: skip
    targets = [("tune", tune_index, "val")] + ([("val", main_index, "val")] if a.val else [])
    for label, index, split in targets:
        pred, crf = work / f"{label}_pred", work / f"{label}_crf"
        t0 = time.perf_counter()
        # the CRF's published widths (benchmarks.studies.crf_widths compares them with widths scaled to the image)
        published = dataclasses.replace(SEGMENTATION_CRF, reference_size=0.0)
        predict_segmentation(work / "model.pt", index.root, split, pred, crf_dir=crf, crf_params=published)
        result[f"{label}_predict_wall_s"] = round(time.perf_counter() - t0, 1)
        result[label] = round(_score(index, split, pred), 2)
        result[f"{label}_crf"] = round(_score(index, split, crf), 2)
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", required=True, help="the pretraining stage's backbone (results/pretrain/...)")
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    p.add_argument("--amp", default="bf16", help="bf16 | none (auto's choice on this machine: bf16)")
    p.add_argument("--seed", type=int, default=15)
    p.add_argument("--val", action="store_true", help="also score val (only once the recipe is chosen)")
    p.add_argument("--folder", default=str(OUT / "deeplab_recipe"))
    p.add_argument("--name", default="deeplab_recipe")
    a = p.parse_args(argv)
    folder = Path(a.folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = SyntheticSpec()  # the default benchmark's data
    main_index = prepare_voc(generate_dataset(spec, folder / "main_raw"), folder / "main", name="synthetic")
    tune_raw = generate_dataset(tuning_spec(spec), folder / "tune_raw")
    tune_index = prepare_voc(tune_raw, folder / "tune", name="synthetic")
    results = {}
    for name in a.candidates:
        results[name] = run_candidate(name, a, main_index, tune_index, folder)
        print(name, results[name], flush=True)
        write_result(a.name, {"seed": a.seed, "amp": a.amp, "candidates": results})
    return results


if __name__ == "__main__":
    main()
