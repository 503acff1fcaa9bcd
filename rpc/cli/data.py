"""Data: the synthetic benchmark, and PASCAL VOC / COCO folders described as prepared datasets."""

from __future__ import annotations

from rpc.cli.common import WORK_HELP, add_command
from rpc.utils.io import DataError


def _synth_parser(sub) -> None:
    s = add_command(sub, "synth", "generate the synthetic VOC-format dataset", _synth,
                    "The workflow's default benchmark: generated images with their masks, image-level labels and "
                    "the train_aug, train and val lists of a VOCdevkit.")  # fmt: skip
    s.add_argument("--out", required=True, help="folder for the VOC-format dataset")
    s.add_argument("--prepared", help="also write the prepared dataset description here")
    s.add_argument(
        "--generator",
        choices=["ellipses", "creatures"],
        default="ellipses",
        help="ellipses: rpc.data.synthetic (the default benchmark); creatures: rpc.data.creatures",
    )
    s.add_argument("--classes", nargs="+", help="class names (default: the generator's own)")
    s.add_argument("--size", type=int, default=128, help="image side in pixels")
    s.add_argument("--n-train", type=int, default=640, help="images of the train_aug list (the training images)")
    s.add_argument(
        "--n-train-eval",
        type=int,
        default=160,
        help="the first ones of train_aug that form the train list (where the maps are scored)",
    )
    s.add_argument("--n-val", type=int, default=96, help="further images, the val list")
    s.add_argument("--max-objects", type=int, default=2, help="most objects per image")
    s.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same files)")


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
        prepare_voc(a.out, a.prepared, name="synthetic", masks_for=("train", "val"))


def _prepare_voc_parser(sub) -> None:
    s = add_command(sub, "prepare-voc", "describe a VOCdevkit (or VOC-format) folder as a prepared dataset",
                    _prepare_voc, "The images stay where they are; --out gets the dataset description, the class "
                    "list, the image-level labels and the split lists that every other command reads.")  # fmt: skip
    s.add_argument("--root", required=True, help="VOCdevkit/VOC2012 (or a folder containing it)")
    s.add_argument("--out", required=True, help="folder for the prepared dataset (the --dataset of the stages)")
    s.add_argument("--splits", nargs="+", default=["train_aug", "train", "val"], help="image lists to take")
    s.add_argument("--name", default="voc", help="the dataset's name in its description")
    s.add_argument("--labels-from", default="agree", choices=["agree", "xml", "masks"],
                   help="image labels: agree = from the XML and the mask, which must name the same classes where "
                   "both exist (default); xml or masks: that source where present")  # fmt: skip
    s.add_argument("--masks-for", nargs="*", default=[], metavar="SPLIT",
                   help="splits whose every image needs a mask (the scored ones)")
    s.add_argument("--workers", type=int, default=1, help="processes reading the images and masks")


def _prepare_voc(a):
    from rpc.data.voc import prepare_voc

    prepare_voc(a.root, a.out, splits=tuple(a.splits), name=a.name, labels_from=a.labels_from,
                masks_for=tuple(a.masks_for), workers=a.workers)  # fmt: skip


def _prepare_coco_parser(sub) -> None:
    s = add_command(sub, "prepare-coco", "COCO instances JSON -> semantic masks, labels, lists", _prepare_coco,
                    "Give --root, or both --instances and --images.")  # fmt: skip
    s.add_argument("--root", help="a COCO 2014 folder (annotations/, train2014/, val2014/); or give both of:")
    s.add_argument("--instances", nargs="+", metavar="SPLIT=JSON", help="e.g. train2014=annotations/instances.json")
    s.add_argument("--images", nargs="+", help="image folders (train2014/, val2014/)")
    s.add_argument("--out", required=True, help="folder for the prepared dataset (masks, labels, lists)")
    s.add_argument("--workers", type=int, default=1, help="processes drawing the masks")
    s.add_argument("--work", help=WORK_HELP)


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


COMMANDS = [_synth_parser, _prepare_voc_parser, _prepare_coco_parser]
