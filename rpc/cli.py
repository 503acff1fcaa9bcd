"""``python -m rpc <stage> ...``: one sub-command per pipeline stage. Parsing only; the work is in the stages."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys

from rpc import __version__
from rpc.utils.io import DataError


def _print_result(result, indent: int | None = None) -> None:
    """A command's result as JSON on stdout, written and flushed in one piece: under torchrun the ranks share
    one stdout, and a line written in two parts can be split by another rank's log."""
    sys.stdout.write(json.dumps(result, indent=indent) + "\n")
    sys.stdout.flush()


class Unfinished(RuntimeError):
    """A stage stopped on purpose before its output was complete (exit status 3)."""


WORK_HELP = ("work folder for the finished images until the whole output is done (resume point of a killed "
             "run); without it they are written to the output folder directly")  # fmt: skip


def _tensorboard_flag(s) -> None:
    """The trainers' optional TensorBoard logging; the workflow turns it on with RPC_TENSORBOARD=1."""
    s.add_argument("--tensorboard", action="store_true", default=os.environ.get("RPC_TENSORBOARD", "") not in ("", "0"),
                   help="also log to TensorBoard under --work (needs the tensorboard package; default on when "
                        "RPC_TENSORBOARD=1, as the workflow's `tensorboard: true` sets)")  # fmt: skip


def _synth_parser(sub) -> None:
    s = sub.add_parser("synth", help="generate the synthetic VOC-format dataset")
    s.add_argument("--out", required=True, help="folder for the VOC-format dataset")
    s.add_argument("--prepared", help="also write the prepared dataset description here")
    s.add_argument("--generator", choices=["ellipses", "creatures"], default="ellipses",
                   help="ellipses: rpc.data.synthetic (the default benchmark); creatures: rpc.data.creatures")
    s.add_argument("--classes", nargs="+", help="class names (default: the generator's own)")
    s.add_argument("--size", type=int, default=128)
    s.add_argument("--n-train", type=int, default=640)
    s.add_argument("--n-train-eval", type=int, default=160)
    s.add_argument("--n-val", type=int, default=96)
    s.add_argument("--max-objects", type=int, default=2)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_synth)


def _synth(a):
    from rpc.data import creatures, synthetic
    from rpc.data.voc import prepare_voc

    spec_type, render = {"ellipses": (synthetic.SyntheticSpec, synthetic.generate_image),
                         "creatures": (creatures.CreaturesSpec, creatures.generate_image)}[a.generator]  # fmt: skip
    spec = spec_type(
        classes=tuple(a.classes or spec_type.classes), size=a.size, n_train=a.n_train, n_train_eval=a.n_train_eval,
        n_val=a.n_val, max_objects=a.max_objects, seed=a.seed,
    )  # fmt: skip
    synthetic.generate_dataset(spec, a.out, render)
    if a.prepared:
        prepare_voc(a.out, a.prepared, name="synthetic")


def _prepare_voc_parser(sub) -> None:
    s = sub.add_parser("prepare-voc", help="describe a VOCdevkit (or VOC-format) folder as a prepared dataset")
    s.add_argument("--root", required=True, help="VOCdevkit/VOC2012 (or a folder containing it)")
    s.add_argument("--out", required=True)
    s.add_argument("--splits", nargs="+", default=["train_aug", "train", "val"])
    s.add_argument("--name", default="voc")
    s.set_defaults(func=_prepare_voc)


def _prepare_voc(a):
    from rpc.data.voc import prepare_voc

    prepare_voc(a.root, a.out, splits=tuple(a.splits), name=a.name)


def _prepare_coco_parser(sub) -> None:
    s = sub.add_parser("prepare-coco", help="COCO instances JSON -> semantic masks, labels, lists")
    s.add_argument("--root", help="a COCO 2014 folder (annotations/, train2014/, val2014/); or give both of:")
    s.add_argument("--instances", nargs="+", metavar="SPLIT=JSON", help="e.g. train2014=annotations/instances.json")
    s.add_argument("--images", nargs="+", help="image folders (train2014/, val2014/)")
    s.add_argument("--out", required=True)
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--work", help=WORK_HELP)
    s.set_defaults(func=_prepare_coco)


def _prepare_coco(a):
    from rpc.data.coco import prepare_coco
    from rpc.data.roots import coco_files

    if a.root:
        instances, images = coco_files(a.root)
    elif a.instances and a.images:
        instances, images = dict(item.split("=", 1) for item in a.instances), a.images
    else:
        raise DataError("prepare-coco needs --root, or both --instances and --images")
    prepare_coco(instances, images, a.out, workers=a.workers, work_dir=a.work)


def _eval_masks_parser(sub) -> None:
    s = sub.add_parser("eval-masks", help="mIoU of a folder of label PNGs against the ground truth")
    s.add_argument("--dataset", required=True, help="prepared dataset folder")
    s.add_argument("--split", required=True)
    s.add_argument("--pred", required=True, help="folder of <name>.png predictions")
    s.add_argument("--uncertain", choices=["background", "ignore"], default="background")
    s.add_argument("--json", required=True)
    s.add_argument("--md")
    s.add_argument("--title")
    s.set_defaults(func=_eval_masks)


def _eval_masks(a):
    from rpc.data.index import DatasetIndex
    from rpc.evaluation.masks import evaluate_mask_dir, write_report

    index = DatasetIndex.load(a.dataset)
    result = evaluate_mask_dir(index, a.split, a.pred, uncertain=a.uncertain)
    write_report(result, a.json, a.md, title=a.title or f"{a.pred} ({a.split})")
    print(f"mIoU {100 * result['miou']:.2f} on {result['images']} images ({a.split}, 255 as {a.uncertain})")


def _train_parser(sub) -> None:
    s = sub.add_parser("train", help="train the RPC classifier (resumes from --work)")
    s.add_argument("--dataset", required=True, help="prepared dataset folder")
    s.add_argument("--work", required=True, help="work folder for checkpoints and metrics (resume point)")
    s.add_argument("--out", required=True, help="final model file")
    s.add_argument("--preset", default="rpc", choices=["cam", "sipe", "rpc"])
    s.add_argument("--config", help="YAML with model: and train: sections")
    s.add_argument("--set", nargs="*", metavar="SECTION.KEY=VALUE", help="overrides, e.g. model.depth=18")
    _tensorboard_flag(s)
    s.set_defaults(func=_train)


def _train(a):
    from rpc.engine.config import build_configs
    from rpc.engine.train import train_classifier

    model_cfg, train_cfg = build_configs(a.preset, a.config, a.set or [])
    result = train_classifier(a.dataset, a.work, a.out, model_cfg, train_cfg, tensorboard=a.tensorboard)
    _print_result(result)
    if result["step"] < result["total_steps"]:  # train.max_steps: a checkpoint, but no model yet
        raise Unfinished(f"stopped at step {result['step']} of {result['total_steps']} (train.max_steps); "
                         f"{a.out} is not written yet: rerun to continue from {a.work}")  # fmt: skip


def _cams_parser(sub) -> None:
    s = sub.add_parser("cams", help="multi-scale + flip RS-CAMs for a split (one shard of it)")
    s.add_argument("--model", required=True)
    s.add_argument("--dataset", required=True)
    s.add_argument("--split", required=True)
    s.add_argument("--out", required=True, help="folder of <name>.npz")
    s.add_argument("--shard", type=int, default=0, help="0-based shard index")
    s.add_argument("--num-shards", type=int, default=1)
    s.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 1.5, 2.0])
    s.add_argument("--save-stages", action="store_true", help="also store each stage's map")
    s.add_argument("--device", default="auto")
    s.add_argument("--workers", default="auto", help="loader processes (auto: 0 on CPU, threads-1 up to 4 on GPU)")
    s.add_argument(
        "--amp",
        default="auto",
        choices=["auto", "bf16", "none"],
        help="bf16 autocast + channels-last; auto = where the hardware has native bf16",
    )
    s.add_argument("--batch-size", type=int, default=4, help="images of equal size per forward pass")
    s.add_argument("--pyramid", default="auto", choices=["auto", "device", "host"],
                   help="where the scales and flips are built: auto = on a GPU, on the host for a CPU")  # fmt: skip
    s.add_argument("--work", help=WORK_HELP)
    s.set_defaults(func=_cams)


def _cams(a):
    from rpc.cams.generate import make_rs_cams

    result = make_rs_cams(
        a.model, a.dataset, a.split, a.out, shard_index=a.shard, num_shards=a.num_shards, scales=tuple(a.scales),
        save_stages=a.save_stages, device=a.device, num_workers=a.workers, amp=a.amp, batch_size=a.batch_size,
        work_dir=a.work, pyramid=a.pyramid,
    )  # fmt: skip
    _print_result(result)


def _eval_cams_parser(sub) -> None:
    s = sub.add_parser("eval-cams", help="Local.Maps mIoU (own background and IRN threshold sweep)")
    s.add_argument("--dataset", required=True)
    s.add_argument("--split", required=True)
    s.add_argument("--cams", required=True, nargs="+", help="map folder(s), e.g. the shards of one run")
    s.add_argument("--json", required=True)
    s.add_argument("--md")
    s.add_argument("--title")
    s.set_defaults(func=_eval_cams)


def _eval_cams(a):
    from rpc.evaluation.local_maps import evaluate_cams, markdown
    from rpc.utils.io import write_json_atomic, write_text_atomic

    result = evaluate_cams(a.dataset, a.split, a.cams)
    write_json_atomic(a.json, result)
    if a.md:
        write_text_atomic(a.md, markdown(result, a.title or f"Local.Maps ({a.split})"))
    print(
        f"Local.Maps mIoU {100 * result['sipe']['miou']:.2f} (own background), "
        f"{100 * result['irn']['best_miou']:.2f} (IRN t={result['irn']['best_threshold']:.2f})"
    )


def _export_maps_parser(sub) -> None:
    s = sub.add_parser("export-maps", help="write maps as the .npy dicts SIPE's or IRN's tools read")
    s.add_argument("--cams", required=True, nargs="+", help="map folder(s), e.g. results/rpc-s15/cams/shard_*")
    s.add_argument("--out", required=True, help="folder for <name>.npy")
    s.add_argument("--format", required=True, choices=["sipe", "irn"])
    s.set_defaults(func=_export_maps)


def _export_maps(a):
    from rpc.data.foreign_maps import export_maps

    _print_result(export_maps(a.cams, a.out, a.format))


def _import_maps_parser(sub) -> None:
    s = sub.add_parser("import-maps", help="bring SIPE- or IRN-format .npy maps into this project's format")
    s.add_argument("--src", required=True, help="folder of <name>.npy (SIPE: keys + IS_CAM; IRN: keys + high_res)")
    s.add_argument("--out", required=True, help="folder for <name>.npz (usable by pseudo-masks, eval-cams, ...)")
    s.add_argument("--format", required=True, choices=["sipe", "irn"])
    s.add_argument("--bg-threshold", type=float, help="IRN maps: the background plane's value (IRN's cam_eval_thres)")
    s.add_argument("--dataset", help="prepared dataset: check every map's keys and size against its image")
    s.add_argument("--split", help="with --dataset: expect exactly this split's images")
    s.add_argument("--shard", type=int, default=0, help="0-based shard index (the maps stage's split of the images)")
    s.add_argument("--num-shards", type=int, default=1)
    s.set_defaults(func=_import_maps)


def _import_maps(a):
    from rpc.data.foreign_maps import import_maps

    _print_result(import_maps(a.src, a.out, a.format, a.bg_threshold, a.dataset, a.split, a.shard, a.num_shards))


def _pseudo_masks_parser(sub) -> None:
    s = sub.add_parser("pseudo-masks", help="pseudo masks: two-pass confident dense-CRF labelling of the maps")
    s.add_argument("--dataset", required=True)
    s.add_argument("--split", required=True)
    s.add_argument("--cams", required=True, nargs="+", help="map folder(s), e.g. the shards of one run")
    s.add_argument("--out", required=True, help="folder of <name>.png pseudo masks (0..C, 255 uncertain)")
    s.add_argument("--workers", type=int, default=1, help="CRF processes")
    s.add_argument("--shard", type=int, default=0, help="0-based shard index")
    s.add_argument("--num-shards", type=int, default=1)
    s.add_argument("--param", nargs="*", metavar="KEY=VALUE", help="CRF parameters, e.g. bilateral_sxy=50")
    s.add_argument("--allow-extra-maps", action="store_true", help="maps may cover more images than the split")
    s.add_argument("--work", help=WORK_HELP)
    s.set_defaults(func=_pseudo_masks)


def _pseudo_masks(a):
    from rpc.crf.pseudo import make_pseudo_masks
    from rpc.models.dense_crf import PSEUDO_MASK_CRF, parse_params

    result = make_pseudo_masks(
        a.dataset, a.split, a.cams, a.out, workers=a.workers, shard_index=a.shard, num_shards=a.num_shards,
        params=parse_params(a.param or [], PSEUDO_MASK_CRF), allow_extra_maps=a.allow_extra_maps, work_dir=a.work,
    )  # fmt: skip
    _print_result(result)


def _figures_parser(sub) -> None:
    s = sub.add_parser("figures", help="one PNG row per image: image, stage maps, RS-CAM, masks, ground truth")
    s.add_argument("--dataset", required=True)
    s.add_argument("--split", default="train")
    s.add_argument("--names", nargs="*", help="images to show (default: the first --count of the split)")
    s.add_argument("--count", type=int, default=6)
    s.add_argument("--cams", nargs="*", help="map folder(s)")
    s.add_argument("--masks", nargs="*", metavar="TITLE=DIR", help="mask columns, e.g. pseudo=results/x/masks")
    s.add_argument("--no-ground-truth", action="store_true")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_figures)


def _figures(a):
    from rpc.data.index import DatasetIndex
    from rpc.evaluation.figures import make_figures

    names = a.names or DatasetIndex.load(a.dataset).names(a.split)[: a.count]
    masks = dict(item.split("=", 1) for item in a.masks or [])
    paths = make_figures(a.dataset, names, a.out, a.cams, masks, ground_truth=not a.no_ground_truth)
    print(f"{len(paths)} figures in {a.out}")


def _seg_train_parser(sub) -> None:
    s = sub.add_parser("seg-train", help="train DeepLabv2 (mmseg) on pseudo masks; resumes from --work")
    s.add_argument("--config", required=True, help="mmseg config, e.g. config/mmseg/deeplabv2_r101-d8_...py")
    s.add_argument("--dataset", required=True)
    s.add_argument("--split", required=True, help="training list, e.g. train_aug")
    s.add_argument("--masks", required=True, help="pseudo-mask folder, or 'ground-truth' (upper bound)")
    s.add_argument("--work", required=True, help="mmengine work folder (periodic checkpoints, logs)")
    s.add_argument("--out", required=True, help="final weights + resolved config")
    s.add_argument("--cfg-options", nargs="*", metavar="KEY=VALUE", help="mmengine config overrides")
    s.add_argument("--launcher", default="none", choices=["none", "pytorch", "slurm"], help="'pytorch' under torchrun")
    s.add_argument("--backbone-weights", help="torchvision-format backbone state dict (e.g. the pretraining output)")
    s.add_argument("--amp", default="auto", choices=["auto", "bf16", "none"],
                   help="bf16 autocast + channels-last; CPU: auto = where a timed step shows it faster; "
                        "GPU: bf16 = mmengine's AmpOptimWrapper in bfloat16, auto = fp32")
    s.add_argument("--seed", type=int, help="mmengine randomness.seed (default: the config's)")
    s.add_argument("--deterministic", action="store_true", help="GPU: deterministic algorithms, no cuDNN benchmark")
    s.add_argument("--epochs", type=float,
                   help="the schedule in passes over --split (iterations = epochs x images / batch) instead of the "
                        "config's max_iters")  # fmt: skip
    _tensorboard_flag(s)
    s.set_defaults(func=_seg_train)


def _seg_train(a):
    from rpc.segmentation.train import train_segmentation

    mask_dir = None if a.masks == "ground-truth" else a.masks
    result = train_segmentation(a.config, a.dataset, a.split, mask_dir=mask_dir, work_dir=a.work, out=a.out,
                                options=a.cfg_options, launcher=a.launcher, backbone_weights=a.backbone_weights,
                                amp=a.amp, seed=a.seed, deterministic=a.deterministic,
                                tensorboard=a.tensorboard, epochs=a.epochs)  # fmt: skip
    _print_result(result)


def _seg_predict_parser(sub) -> None:
    s = sub.add_parser("seg-predict", help="DeepLabv2 predictions for a split (optionally + CRF)")
    s.add_argument("--model", required=True)
    s.add_argument("--dataset", required=True)
    s.add_argument("--split", required=True)
    s.add_argument("--out", required=True, help="folder of <name>.png predictions")
    s.add_argument("--crf-out", help="also write CRF-refined predictions here")
    s.add_argument("--scales", type=float, nargs="+", default=[1.0])
    s.add_argument("--flip", action="store_true")
    s.add_argument("--device", default="auto")
    s.add_argument("--shard", type=int, default=0)
    s.add_argument("--num-shards", type=int, default=1)
    s.add_argument("--crf-param", nargs="*", metavar="KEY=VALUE", help="CRF parameters, e.g. bilateral_sxy=67")
    s.add_argument("--crf-workers", type=int, default=1,
                   help="processes for the CRF beside the model's forwards (1: in this process; same masks)")
    s.add_argument("--work", help=WORK_HELP)
    s.set_defaults(func=_seg_predict)


def _seg_predict(a):
    from rpc.models.dense_crf import SEGMENTATION_CRF, parse_params
    from rpc.segmentation.predict import predict_segmentation

    result = predict_segmentation(
        a.model, a.dataset, a.split, a.out, crf_dir=a.crf_out, scales=tuple(a.scales), flip=a.flip,
        device=a.device, shard_index=a.shard, num_shards=a.num_shards,
        crf_params=parse_params(a.crf_param or [], SEGMENTATION_CRF), work_dir=a.work, crf_workers=a.crf_workers,
    )  # fmt: skip
    _print_result(result)


def _unlock_stale_parser(sub) -> None:
    s = sub.add_parser("unlock-stale", help="remove a Snakemake lock left by a killed run (none if one still runs)")
    s.add_argument("--dir", default=".", help="the workflow's working folder")
    s.set_defaults(func=_unlock_stale)


def _unlock_stale(a):
    from rpc.utils.snakemake_lock import unlock_if_stale

    print(f"{a.dir}: {unlock_if_stale(a.dir)}")


def _compare_results_parser(sub) -> None:
    s = sub.add_parser("compare-results", help="are two results folders the same (every file; JSON without timings)?")
    s.add_argument("a")
    s.add_argument("b")
    s.set_defaults(func=_compare_results)


def _compare_results(a):
    from rpc.utils.digests import compare_outputs

    result = compare_outputs(a.a, a.b)
    _print_result(result, indent=1)
    if result["differ"] or result["only_a"] or result["only_b"]:
        raise SystemExit(1)


def _clean_work_parser(sub) -> None:
    s = sub.add_parser("clean-work", help="remove the work folders of finished trainings (unfinished ones kept)")
    s.add_argument("--work", default="work")
    s.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    s.set_defaults(func=_clean_work)


def _clean_work(a):
    from rpc.utils.workdir import clean_finished

    removed = clean_finished(a.work, dry_run=a.dry_run)
    for folder, size in removed:
        print(f"{'would remove' if a.dry_run else 'removed'} {folder} ({size / 2**20:.1f} MiB)")
    print(f"{len(removed)} finished work folder(s), {sum(s for _, s in removed) / 2**20:.1f} MiB; unfinished kept")


def _ablation_tables_parser(sub) -> None:
    s = sub.add_parser("ablation-tables", help="the paper's ablation tables from the cells' local_maps.json")
    s.add_argument("--spec", default="config/ablations.yaml")
    s.add_argument("--results", default="results", help="folder holding the <run>/ result folders")
    s.add_argument("--inputs", nargs="+", required=True, help="the <results>/<run>/local_maps.json files to read")
    s.add_argument("--md", required=True)
    s.add_argument("--json", required=True)
    s.set_defaults(func=_ablation_tables)


def _ablation_tables(a):
    from rpc.evaluation.ablations import write_ablation_tables
    from rpc.evaluation.declared import DeclaredFiles

    for t in write_ablation_tables(a.spec, DeclaredFiles(a.inputs, a.results), a.md, a.json):
        print(f"{t['title']}: best ours {t['ours_best']!r}, paper {t['paper_best']!r}")


def _export_backbone_parser(sub) -> None:
    s = sub.add_parser("export-backbone", help="a trained classifier's backbone as a torchvision state dict")
    s.add_argument("--model", required=True)
    s.add_argument("--out", required=True, help=".pth file usable as model.weights")
    s.add_argument("--stage", type=int, default=0)
    s.set_defaults(func=_export_backbone)


def _export_backbone(a):
    import torch

    from rpc.models.backbone import torchvision_state_dict
    from rpc.models.checkpoint import load_model
    from rpc.utils.io import atomic_path

    model, _, _ = load_model(a.model)
    with atomic_path(a.out) as tmp:
        torch.save(torchvision_state_dict(model.stages[a.stage].backbone), tmp)
    print(f"stage {a.stage} backbone of {a.model} -> {a.out}")


def _pretrain_parser(sub) -> None:
    s = sub.add_parser("pretrain", help="pretrain a ResNet on the synthetic corpus (offline stand-in for ImageNet)")
    s.add_argument("--out", required=True, help="torchvision state dict (.pth), usable as model.weights")
    s.add_argument("--work", required=True, help="work folder (per-epoch resume point)")
    s.add_argument("--report", help="JSON report: held-out accuracy per epoch")
    s.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="PretrainConfig fields, e.g. epochs=8")
    s.add_argument("--no-cache", action="store_true",
                   help="neither take the weights from this machine's cache nor keep them there "
                        "(rpc.engine.pretrain_cache; also RPC_PRETRAIN_CACHE=0)")  # fmt: skip
    s.set_defaults(func=_pretrain)


def _pretrain(a):
    from rpc.engine.config import build, parse_key_values
    from rpc.engine.pretrain import PretrainConfig, pretrain_backbone

    cfg = build(PretrainConfig, parse_key_values(a.set or []), "pretrain", "pretrain config")
    result = pretrain_backbone(a.out, a.work, cfg, a.report, cache=not a.no_cache)
    _print_result({k: result[k] for k in ("depth", "classes", "train_images", "val_accuracy")})


def _eval_parts_parser(sub) -> None:
    s = sub.add_parser("eval-parts", help="part-level recall of maps / pseudo masks (synthetic benchmark)")
    s.add_argument("--dataset", required=True)
    s.add_argument("--split", required=True)
    s.add_argument("--cams", nargs="*", help="map folder(s), e.g. the shards of one run")
    s.add_argument("--masks", help="pseudo-mask folder")
    s.add_argument("--json", required=True)
    s.set_defaults(func=_eval_parts)


def _eval_parts(a):
    from rpc.evaluation.parts import evaluate_parts
    from rpc.utils.io import write_json_atomic

    result = evaluate_parts(a.dataset, a.split, a.cams, a.masks)
    write_json_atomic(a.json, result)
    for kind in ("maps", "pseudo_masks"):
        if result[kind]:
            r = result[kind]
            print(f"{kind}: discriminative recall {100 * r['disc_recall']:.1f}, sub-discriminative recall "
                  f"{100 * r['sub_recall']:.1f}, background false positives {100 * r['bg_false_positive']:.1f}")


def _merge_dirs_parser(sub) -> None:
    s = sub.add_parser("merge-dirs", help="gather shard folders into one (hard links; copies across devices)")
    s.add_argument("--inputs", nargs="+", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_merge_dirs)


def _merge_dirs(a):
    from rpc.utils.merge import merge_dirs

    n = merge_dirs(a.inputs, a.out)
    print(f"{n} files in {a.out}")


def _report_pages_parser(sub) -> None:
    s = sub.add_parser("report-pages", help="the report's HTML tables and plots (curves, per-class IoU, IRN sweep)")
    s.add_argument("--results", default="results", help="the results folder")
    s.add_argument("--runs", nargs="*", default=[], help="run folders under --results, e.g. rpc-s15")
    s.add_argument("--md", nargs="*", default=[], help="Markdown tables to render, as MD=HTML pairs")
    s.add_argument("--curves", help="PNG: training curves")
    s.add_argument("--local-maps", help="PNG: per-class Local.Maps IoU and the IRN sweep")
    s.set_defaults(func=_report_pages)


def _report_pages(a):
    from pathlib import Path

    from rpc.evaluation.report_pages import markdown_to_html, plot_curves, plot_local_maps
    from rpc.utils.io import write_text_atomic

    for pair in a.md:
        md, sep, out = pair.partition("=")
        if not sep:
            raise DataError(f"--md {pair!r}: expected MD=HTML")
        text = Path(md).read_text()
        title = next((line[2:] for line in text.splitlines() if line.startswith("# ")), Path(md).stem)
        write_text_atomic(out, markdown_to_html(text, title))
    if a.curves:
        plot_curves(a.results, a.runs, a.curves)
    if a.local_maps:
        plot_local_maps(a.results, a.runs, a.local_maps)


def _export_mmseg_parser(sub) -> None:
    s = sub.add_parser("export-mmseg", help="a trained DeepLab as an mmseg config.py + checkpoint.pth (init_model)")
    s.add_argument("--model", required=True, help="results/<run>/segmentation/model.pt")
    s.add_argument("--out", required=True, help="folder for config.py and checkpoint.pth")
    s.add_argument("--dataset", help="prepared dataset of the test loop (default: the one the model was trained on)")
    s.add_argument("--split", default="val", help="split of the test loop")
    s.set_defaults(func=_export_mmseg)


def _export_mmseg(a):
    from rpc.segmentation.export import export_mmseg

    _print_result(export_mmseg(a.model, a.out, a.dataset, a.split))


def _segment_parser(sub) -> None:
    s = sub.add_parser("segment", help="segment your own images with a trained DeepLab (palette PNGs)")
    s.add_argument("images", nargs="+", help="image files (JPEG/PNG, RGB)")
    s.add_argument("--model", required=True, help="results/<run>/segmentation/model.pt")
    s.add_argument("--out", required=True, help="folder for <image name>.png (VOC test server: "
                   "results/VOC2012/Segmentation/comp6_test_cls)")  # fmt: skip
    s.add_argument("--scales", nargs="+", type=float, default=[1.0])
    s.add_argument("--flip", action="store_true")
    s.add_argument("--crf", action="store_true", help="dense-CRF post-processing of the scores")
    s.add_argument("--device", default="auto")
    s.set_defaults(func=_segment)


def _segment(a):
    from rpc.segmentation.predict import segment_images

    result = segment_images(a.model, a.images, a.out, scales=tuple(a.scales), flip=a.flip, crf=a.crf,
                            device=a.device)  # fmt: skip
    _print_result(result)


def _summary_parser(sub) -> None:
    s = sub.add_parser("summary", help="Table 1/4 over seeds, paired differences, part-level scores, every run")
    s.add_argument("--experiments", nargs="+", help="NAME or NAME=SEED,SEED; runs are <experiment>-s<seed>")
    s.add_argument("--seeds", nargs="+", type=int, help="seeds of the experiments named without their own")
    s.add_argument("--extra", nargs="*", help="runs without seeds, e.g. ground_truth (the upper bound)")
    s.add_argument("--runs", nargs="+", help="instead: one run's own summary")
    s.add_argument("--dataset", help="prepared dataset (the paper's values are shown only for VOC / COCO themselves)")
    s.add_argument("--plot", help="PNG bar plot of the part-level scores")
    s.add_argument("--results", default="results", help="folder holding the <run>/ result folders")
    s.add_argument("--inputs", nargs="+", required=True,
                   help="the score files to read (<results>/<run>/<file>; the rule's declared input)")
    s.add_argument("--dataset-kind", default="synthetic", help="voc | coco | synthetic (picks the paper's values)")
    s.add_argument("--md", required=True)
    s.add_argument("--json", required=True)
    s.set_defaults(func=_summary)


def _summary(a):
    from rpc.evaluation.declared import DeclaredFiles
    from rpc.evaluation.summary import write_run_summary, write_summary

    files = DeclaredFiles(a.inputs, a.results)
    if a.runs:
        for run in a.runs:
            write_run_summary(run, files, a.dataset_kind, a.md, a.json)
        return
    if not a.experiments:
        raise DataError("summary needs --experiments (or --runs for one run's summary)")
    seeds = {}
    for item in a.experiments:  # NAME (the --seeds) or NAME=SEED,SEED,...
        name, sep, own = item.partition("=")
        seeds[name] = [int(x) for x in own.split(",")] if sep else list(a.seeds or [])
        if not seeds[name]:
            raise DataError(f"summary: no seeds for experiment {name!r} (give --seeds or {name}=15,16)")
    write_summary(seeds, files, a.dataset_kind, a.md, a.json, a.extra or [], a.dataset, a.plot)


#: One sub-command per stage, in the order `--help` lists them; each parser sits next to its handler above.
PARSERS = [
    _synth_parser, _prepare_voc_parser, _prepare_coco_parser, _eval_masks_parser, _train_parser, _cams_parser,
    _eval_cams_parser, _export_maps_parser, _import_maps_parser, _pseudo_masks_parser, _figures_parser,
    _seg_train_parser, _seg_predict_parser,
    _clean_work_parser, _unlock_stale_parser, _compare_results_parser,
    _ablation_tables_parser, _export_backbone_parser, _pretrain_parser, _eval_parts_parser, _merge_dirs_parser,
    _summary_parser, _report_pages_parser, _export_mmseg_parser, _segment_parser,
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rpc", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(
        dest="command",
        required=True,
        parser_class=functools.partial(argparse.ArgumentParser, formatter_class=argparse.ArgumentDefaultsHelpFormatter),
    )
    for add in PARSERS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the stages' status lines (work folders, resumes, precision decisions), time-stamped, on stderr: stdout keeps
    # only the command's result (one JSON line for the model stages), which scripts read
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")  # fmt: skip
    if not sys.stderr.isatty():  # a log file: a progress line a minute, not ten a second
        os.environ.setdefault("TQDM_MININTERVAL", "60")
    try:
        args.func(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Unfinished as exc:
        print(f"unfinished: {exc}", file=sys.stderr)
        return 3
    return 0
