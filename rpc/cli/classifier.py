"""Classifier: the backbone's pretraining, the RPC classifier's training, its backbone as a torchvision file."""

from __future__ import annotations

from rpc.cli.common import Unfinished, add_command, add_set_option, print_result, tensorboard_flag


def _pretrain_parser(sub) -> None:
    s = add_command(sub, "pretrain", "pretrain a ResNet on the synthetic corpus (offline stand-in for ImageNet)",
                    _pretrain, "Resumes from --work; prints the held-out accuracy as one JSON line.")  # fmt: skip
    s.add_argument("--out", required=True, help="torchvision state dict (.pth), usable as model.weights")
    s.add_argument("--work", required=True, help="work folder (per-epoch resume point)")
    s.add_argument("--report", help="JSON report: held-out accuracy per epoch")
    add_set_option(s, help="PretrainConfig fields, e.g. epochs=8")
    s.add_argument("--no-cache", action="store_true",
                   help="neither take the weights from this machine's cache nor keep them there "
                        "(rpc.engine.pretrain_cache; also RPC_PRETRAIN_CACHE=0)")  # fmt: skip


def _pretrain(a):
    from rpc.engine.config import build, parse_key_values
    from rpc.engine.pretrain import PretrainConfig, pretrain_backbone

    cfg = build(PretrainConfig, parse_key_values(a.set or []), "pretrain", "pretrain config")
    result = pretrain_backbone(a.out, a.work, cfg, a.report, cache=not a.no_cache)
    print_result({k: result[k] for k in ("depth", "classes", "train_images", "val_accuracy")})


def _train_parser(sub) -> None:
    s = add_command(sub, "train", "train the RPC classifier (resumes from --work)", _train,
                    "A preset, then --config, then --set give the model: and train: settings; prints the result "
                    "as one JSON line, and exits with status 3 where train.max_steps stopped it early.")  # fmt: skip
    s.add_argument("--dataset", required=True, help="prepared dataset folder")
    s.add_argument("--work", required=True, help="work folder for checkpoints and metrics (resume point)")
    s.add_argument("--out", required=True, help="final model file")
    s.add_argument(
        "--preset",
        default="rpc",
        choices=["cam", "sipe", "rpc"],
        help="the method's settings to start from: plain CAM, SIPE or RPC",
    )
    s.add_argument("--config", help="YAML with model: and train: sections")
    add_set_option(s, metavar="SECTION.KEY=VALUE", help="overrides, e.g. model.depth=18 train.lr=0.05")
    tensorboard_flag(s)


def _train(a):
    from rpc.engine.config import build_configs
    from rpc.engine.train import train_classifier

    model_cfg, train_cfg = build_configs(a.preset, a.config, a.set or [])
    result = train_classifier(a.dataset, a.work, a.out, model_cfg, train_cfg, tensorboard=a.tensorboard)
    print_result(result)
    if result["step"] < result["total_steps"]:  # train.max_steps: a checkpoint, but no model yet
        raise Unfinished(f"stopped at step {result['step']} of {result['total_steps']} (train.max_steps); "
                         f"{a.out} is not written yet: rerun to continue from {a.work}")  # fmt: skip


def _export_backbone_parser(sub) -> None:
    s = add_command(sub, "export-backbone", "a trained classifier's backbone as a torchvision state dict",
                    _export_backbone)  # fmt: skip
    s.add_argument("--model", required=True, help="the classifier model file (train's --out)")
    s.add_argument("--out", required=True, help=".pth file usable as model.weights")
    s.add_argument("--stage", type=int, default=0, help="which stage's backbone (0: the first)")


def _export_backbone(a):
    import torch

    from rpc.models.backbone import torchvision_state_dict
    from rpc.models.checkpoint import load_model
    from rpc.utils.io import atomic_path

    model, _, _ = load_model(a.model)
    with atomic_path(a.out) as tmp:
        torch.save(torchvision_state_dict(model.stages[a.stage].backbone), tmp)
    print(f"stage {a.stage} backbone of {a.model} -> {a.out}")


COMMANDS = [_pretrain_parser, _train_parser, _export_backbone_parser]
