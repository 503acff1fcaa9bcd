"""``python -m rpc <stage> ...``: one sub-command per pipeline stage. Parsing only; the work is in the stages."""

from __future__ import annotations

import argparse
import sys

from rpc.data.synthetic import DEFAULT_CLASSES
from rpc.utils.io import DataError


def _synth(a):
    from rpc.data.synthetic import SyntheticSpec, generate_dataset
    from rpc.data.voc import prepare_voc

    spec = SyntheticSpec(
        classes=tuple(a.classes), size=a.size, n_train=a.n_train, n_train_eval=a.n_train_eval,
        n_val=a.n_val, max_objects=a.max_objects, seed=a.seed,
    )  # fmt: skip
    generate_dataset(spec, a.out)
    if a.prepared:
        prepare_voc(a.out, a.prepared, name="synthetic")


def _prepare_voc(a):
    from rpc.data.voc import prepare_voc

    prepare_voc(a.root, a.out, splits=tuple(a.splits), name=a.name)


def _prepare_coco(a):
    from rpc.data.coco import prepare_coco

    instances = dict(item.split("=", 1) for item in a.instances)
    prepare_coco(instances, a.images, a.out, workers=a.workers)


def _eval_masks(a):
    from rpc.data.index import DatasetIndex
    from rpc.evaluation.masks import evaluate_mask_dir, write_report

    index = DatasetIndex.load(a.dataset)
    result = evaluate_mask_dir(index, a.split, a.pred, uncertain=a.uncertain)
    write_report(result, a.json, a.md, title=a.title or f"{a.pred} ({a.split})")
    print(f"mIoU {100 * result['miou']:.2f} on {result['images']} images ({a.split}, 255 as {a.uncertain})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rpc", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="generate the synthetic VOC-format dataset")
    s.add_argument("--out", required=True, help="folder for the VOC-format dataset")
    s.add_argument("--prepared", help="also write the prepared dataset description here")
    s.add_argument("--classes", nargs="+", default=list(DEFAULT_CLASSES))
    s.add_argument("--size", type=int, default=128)
    s.add_argument("--n-train", type=int, default=320)
    s.add_argument("--n-train-eval", type=int, default=160)
    s.add_argument("--n-val", type=int, default=96)
    s.add_argument("--max-objects", type=int, default=2)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_synth)

    s = sub.add_parser("prepare-voc", help="describe a VOCdevkit (or VOC-format) folder as a prepared dataset")
    s.add_argument("--root", required=True, help="VOCdevkit/VOC2012 (or a folder containing it)")
    s.add_argument("--out", required=True)
    s.add_argument("--splits", nargs="+", default=["train_aug", "train", "val"])
    s.add_argument("--name", default="voc")
    s.set_defaults(func=_prepare_voc)

    s = sub.add_parser("prepare-coco", help="COCO instances JSON -> semantic masks, labels, lists")
    s.add_argument(
        "--instances",
        nargs="+",
        required=True,
        metavar="SPLIT=JSON",
        help="e.g. train2014=annotations/instances_train2014.json",
    )
    s.add_argument("--images", nargs="+", required=True, help="image folders (train2014/, val2014/)")
    s.add_argument("--out", required=True)
    s.add_argument("--workers", type=int, default=1)
    s.set_defaults(func=_prepare_coco)

    s = sub.add_parser("eval-masks", help="mIoU of a folder of label PNGs against the ground truth")
    s.add_argument("--dataset", required=True, help="prepared dataset folder")
    s.add_argument("--split", required=True)
    s.add_argument("--pred", required=True, help="folder of <name>.png predictions")
    s.add_argument("--uncertain", choices=["background", "ignore"], default="background")
    s.add_argument("--json", required=True)
    s.add_argument("--md")
    s.add_argument("--title")
    s.set_defaults(func=_eval_masks)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
