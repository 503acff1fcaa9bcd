"""torchvision ResNet trunk at output stride 16, trained as in SIPE (docs/method.md, "The stage network").

SIPE (``network/resnet50_SIPE.py``, RPC's base) computes ``x2 = self.stage2(x1).detach()`` and uses a
``FixedBatchNorm`` that always normalises with the running statistics but keeps its affine weight and bias as
parameters. So here:

- strides (2, 2, 2, 1): layer4 keeps stride 1 (no dilation), so layer3 and layer4 share stride 16;
- stem, layer1 and layer2 get no gradient: they run without autograd and their parameters are frozen;
- BatchNorm always uses its running statistics (eval mode, also in training); the BN affine weight and bias of
  layers 3-4 train with the convolutions, those of conv1/bn1 and layers 1-2 stay fixed.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from torch import nn

from rpc.utils.checkpoint_file import load_checkpoint
from rpc.utils.io import DataError

DEPTHS = {18: "resnet18", 34: "resnet34", 50: "resnet50", 101: "resnet101"}
#: what a backbone weights file should be (the message of a file that is not one)
BACKBONE_FILE = "a torchvision ResNet state dict (e.g. resnet50-0676ba61.pth) or export-backbone's output"
WEIGHTS = {18: "ResNet18_Weights", 34: "ResNet34_Weights", 50: "ResNet50_Weights", 101: "ResNet101_Weights"}


def layer_channels(depth: int) -> tuple[int, int, int, int]:
    """Output channels of layer1..layer4."""
    return (64, 128, 256, 512) if depth in (18, 34) else (256, 512, 1024, 2048)


def load_resnet(depth: int, weights: str | os.PathLike = "imagenet") -> torchvision.models.ResNet:
    """A torchvision ResNet with ``weights``: ``imagenet`` (torchvision download), ``none`` or a local file
    holding a torchvision state dict (optionally under ``state_dict``/``model``), loaded weights-only."""
    if depth not in DEPTHS:
        raise ValueError(f"backbone depth must be one of {sorted(DEPTHS)}, got {depth}")
    builder = getattr(torchvision.models, DEPTHS[depth])
    if weights == "imagenet":
        enum = getattr(torchvision.models, WEIGHTS[depth]).IMAGENET1K_V1
        try:
            return builder(weights=enum)
        except Exception as exc:  # no network: say what to do instead
            raise RuntimeError(
                f"could not download ImageNet weights for {DEPTHS[depth]} ({exc}); on an offline machine pass "
                f"a local checkpoint path as weights (e.g. the file {enum.url.rsplit('/', 1)[-1]})"
            ) from exc
    model = builder(weights=None)
    if weights in (None, "none"):
        return model
    path = Path(weights)
    if not path.is_file():
        raise DataError(f"{path}: backbone weights not found (use 'imagenet', 'none' or a checkpoint path)")
    state = load_checkpoint(path, expected=BACKBONE_FILE)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise DataError(
            f"{path}: not a {DEPTHS[depth]} checkpoint (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model


class FrozenBNResNet(nn.Module):
    """ResNet trunk (SIPE's regime, see the module docstring) returning ``[F1, F2, F3, F4]`` with strides 4, 8, 16, 16.

    Input ``(N, 3, H, W)``; ``F_k`` has ``layer_channels(depth)[k-1]`` channels.
    """

    def __init__(self, depth: int = 50, weights: str | os.PathLike = "imagenet"):
        super().__init__()
        net = load_resnet(depth, weights)
        block = net.layer4[0]
        # output stride 16: the first block of layer4 keeps the resolution
        (block.conv2 if hasattr(block, "conv3") else block.conv1).stride = (1, 1)
        block.downsample[0].stride = (1, 1)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.depth = depth
        self.channels = layer_channels(depth)
        for part in (self.stem, self.layer1, self.layer2):  # no gradient reaches them (detached after layer2)
            for p in part.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():  # frozen BN: always use running statistics
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():  # SIPE: x2 = stage2(x1).detach()
            f1 = self.layer1(self.stem(x))
            f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f1, f2, f3, f4]


def torchvision_state_dict(backbone: FrozenBNResNet) -> dict[str, torch.Tensor]:
    """The trunk's weights under torchvision's key names (``conv1``, ``bn1``, ``layerN``), so a trained
    backbone can initialise another model through ``weights=<path>``."""
    rename = {"stem.0.": "conv1.", "stem.1.": "bn1."}
    state = {}
    for key, value in backbone.state_dict().items():
        for old, new in rename.items():
            if key.startswith(old):
                key = new + key.removeprefix(old)
        state[key] = value.detach().cpu().clone()
    return state
