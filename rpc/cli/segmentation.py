"""Segmentation: DeepLabv2 (mmseg) trained on the pseudo masks, its predictions, a user's own images, and the
trained model as a plain mmseg folder."""

from __future__ import annotations

from pathlib import Path

from rpc.cli.common import WORK_HELP, add_command, add_set_option, print_result, tensorboard_flag
from rpc.cli.masks import CRF_KEYS, crf_params
from rpc.utils.io import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _seg_train_parser(sub) -> None:
    s = add_command(sub, "seg-train", "train DeepLabv2 (mmseg) on pseudo masks; resumes from --work", _seg_train,
                    "The class count comes from the dataset; prints the result as one JSON line (one per rank "
                    "under torchrun).")  # fmt: skip
    s.add_argument("--config", required=True, help="mmseg config, e.g. config/mmseg/deeplabv2_r101-d8_...py")
    s.add_argument("--dataset", required=True, help="prepared dataset folder")
    s.add_argument("--split", required=True, help="training list, e.g. train_aug")
    s.add_argument("--masks", required=True, help="pseudo-mask folder, or 'ground-truth' (upper bound)")
    s.add_argument("--work", required=True, help="mmengine work folder (periodic checkpoints, logs)")
    s.add_argument("--out", required=True, help="final weights + resolved config")
    add_set_option(s, "--cfg-options", help="mmengine config overrides, e.g. train_cfg.max_iters=2000")
    s.add_argument("--launcher", default="none", choices=["none", "pytorch", "slurm"], help="'pytorch' under torchrun")
    s.add_argument("--backbone-weights", help="torchvision-format backbone state dict (e.g. the pretraining output)")
    s.add_argument("--amp", default="auto", choices=["auto", "bf16", "none"],
                   help="bf16 autocast + channels-last; CPU: auto = where a timed step shows it faster; "
                        "GPU: bf16 = mmengine's AmpOptimWrapper in bfloat16, auto = fp32")  # fmt: skip
    s.add_argument("--seed", type=int, help="mmengine randomness.seed (default: the config's)")
    s.add_argument("--deterministic", action="store_true", help="GPU: deterministic algorithms, no cuDNN benchmark")
    s.add_argument("--epochs", type=float,
                   help="the schedule in passes over --split (iterations = epochs x images / batch) instead of the "
                        "config's max_iters")  # fmt: skip
    tensorboard_flag(s)


def _seg_train(a):
    from rpc.segmentation.train import train_segmentation

    mask_dir = None if a.masks == "ground-truth" else a.masks
    result = train_segmentation(a.config, a.dataset, a.split, mask_dir=mask_dir, work_dir=a.work, out=a.out,
                                options=a.set, launcher=a.launcher, backbone_weights=a.backbone_weights,
                                amp=a.amp, seed=a.seed, deterministic=a.deterministic,
                                tensorboard=a.tensorboard, epochs=a.epochs)  # fmt: skip
    print_result(result)


def _seg_predict_parser(sub) -> None:
    s = add_command(sub, "seg-predict", "DeepLabv2 predictions for a split (optionally + CRF)", _seg_predict,
                    "One <name>.png of class indices per image of the split (of its shard).")  # fmt: skip
    s.add_argument("--model", required=True, help="results/<run>/segmentation/model.pt (seg-train's --out)")
    s.add_argument("--dataset", required=True, help="prepared dataset folder")
    s.add_argument("--split", required=True, help="image list of the dataset, e.g. val")
    s.add_argument("--out", required=True, help="folder of <name>.png predictions")
    s.add_argument("--crf-out", help="also write CRF-refined predictions here")
    s.add_argument("--scores-out", help="also store the class scores here (<name>.npz), for a later `seg-crf`")
    s.add_argument("--scales", type=float, nargs="+", default=[1.0], help="image scales (their scores averaged)")
    s.add_argument("--flip", action="store_true", help="also average the horizontally flipped image's scores")
    s.add_argument("--device", default="auto", help="auto (a GPU where there is one), cpu, cuda or cuda:N")
    s.add_argument("--shard", type=int, default=0, help="0-based shard index")
    s.add_argument("--num-shards", type=int, default=1, help="how many shards the split is cut into")
    add_set_option(s, "--crf-param", help=f"CRF parameters of --crf-out, e.g. bilateral_sxy=67; keys: {CRF_KEYS}")
    s.add_argument(
        "--crf-workers",
        type=int,
        default=1,
        help="processes for the CRF beside the model's forwards (1: in this process; same masks)",
    )
    s.add_argument("--work", help=WORK_HELP)


def _seg_predict(a):
    from rpc.models.dense_crf import SEGMENTATION_CRF
    from rpc.segmentation.predict import predict_segmentation

    result = predict_segmentation(
        a.model, a.dataset, a.split, a.out, crf_dir=a.crf_out, scores_dir=a.scores_out, scales=tuple(a.scales),
        flip=a.flip,
        device=a.device, shard_index=a.shard, num_shards=a.num_shards,
        crf_params=crf_params("seg-predict", a.set, SEGMENTATION_CRF), work_dir=a.work, crf_workers=a.crf_workers,
    )  # fmt: skip
    print_result(result)


def _seg_crf_parser(sub) -> None:
    s = add_command(sub, "seg-crf", "CRF-refined predictions from the scores `seg-predict --scores-out` stored",
                    _seg_crf, "CPU only (no model, no torch): the <name>.png of `seg-predict --crf-out`.")  # fmt: skip
    s.add_argument("--dataset", required=True, help="prepared dataset folder")
    s.add_argument("--split", required=True, help="image list of the dataset, e.g. val")
    s.add_argument("--scores", required=True, nargs="+", help="score folder(s) (seg-predict's --scores-out)")
    s.add_argument("--out", required=True, help="folder of <name>.png CRF-refined predictions")
    s.add_argument("--workers", type=int, default=1, help="CRF processes")
    s.add_argument("--shard", type=int, default=0, help="0-based shard index")
    s.add_argument("--num-shards", type=int, default=1, help="how many shards the split is cut into")
    add_set_option(s, "--param", help=f"CRF parameters, e.g. bilateral_sxy=67; keys: {CRF_KEYS}")
    s.add_argument("--work", help=WORK_HELP)


def _seg_crf(a):
    from rpc.models.dense_crf import SEGMENTATION_CRF
    from rpc.segmentation.refine import refine_predictions

    result = refine_predictions(
        a.dataset, a.split, a.scores, a.out, workers=a.workers, shard_index=a.shard, num_shards=a.num_shards,
        params=crf_params("seg-crf", a.set, SEGMENTATION_CRF), work_dir=a.work,
    )  # fmt: skip
    print_result(result)


def image_files(items) -> list[str]:
    """``segment``'s arguments -> image files: a file stays as given, a folder stands for its *.jpg, *.jpeg and
    *.png files (any case), sorted. A missing path or a folder without such images is a DataError naming it."""
    files = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise DataError(f"segment: {item}: a folder without .jpg, .jpeg or .png images")
            files += [str(p) for p in found]
        elif path.is_file():
            files.append(str(item))
        else:
            raise DataError(f"segment: {item}: no such file or folder")
    return files


def _segment_parser(sub) -> None:
    s = add_command(sub, "segment", "segment your own images with a trained DeepLab (palette PNGs)", _segment,
                    "No dataset needed: give image files or folders of them; --out gets <image name>.png, the "
                    "class indices of the model's classes in VOC's palette.")  # fmt: skip
    s.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files (JPEG/PNG, RGB), or folders: their *.jpg, *.jpeg, *.png files",
    )
    s.add_argument("--model", required=True, help="results/<run>/segmentation/model.pt")
    s.add_argument("--out", required=True, help="folder for <image name>.png (VOC test server: "
                   "results/VOC2012/Segmentation/comp6_test_cls)")  # fmt: skip
    s.add_argument("--scales", nargs="+", type=float, default=[1.0], help="image scales (their scores averaged)")
    s.add_argument("--flip", action="store_true", help="also average the horizontally flipped image's scores")
    s.add_argument("--crf", action="store_true", help="dense-CRF post-processing of the scores")
    s.add_argument("--device", default="auto", help="auto (a GPU where there is one), cpu, cuda or cuda:N")


def _segment(a):
    from rpc.segmentation.predict import segment_images

    result = segment_images(a.model, image_files(a.images), a.out, scales=tuple(a.scales), flip=a.flip, crf=a.crf,
                            device=a.device)  # fmt: skip
    print_result(result)


def _export_mmseg_parser(sub) -> None:
    s = add_command(sub, "export-mmseg", "a trained DeepLab as an mmseg config.py + checkpoint.pth (init_model)",
                    _export_mmseg, "mmseg's own tools (init_model, the test loop) run the exported folder "
                    "without this project's model file.")  # fmt: skip
    s.add_argument("--model", required=True, help="results/<run>/segmentation/model.pt")
    s.add_argument("--out", required=True, help="folder for config.py and checkpoint.pth")
    s.add_argument("--dataset", help="prepared dataset of the test loop (default: the one the model was trained on)")
    s.add_argument("--split", default="val", help="split of the test loop")


def _export_mmseg(a):
    from rpc.segmentation.export import export_mmseg

    print_result(export_mmseg(a.model, a.out, a.dataset, a.split))


COMMANDS = [_seg_train_parser, _seg_predict_parser, _seg_crf_parser, _segment_parser, _export_mmseg_parser]
