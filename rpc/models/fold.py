"""Batch norm folded into the convolution before it, for inference.

A BatchNorm2d in eval mode is an affine map per channel, ``y = (x - mean) / sqrt(var + eps) * gamma + beta``; after
a convolution it can be merged into the convolution's weights and bias, which removes one pass over every feature
map. The backbones here run BN on fixed statistics (SIPE's regime, ``rpc.models.backbone``; DeepLab's frozen BN),
so the folded network computes the same function up to float rounding (tests/test_models.py bounds the difference).

Only a BN applied directly to a convolution's output is folded: torchvision's and mmseg's ResNet blocks
(``convN`` followed by ``bnN``), and ``Sequential`` containers with a ``Conv2d`` immediately followed by a
``BatchNorm2d`` (the stem, the shortcut projections). Any other BN stays as it is.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _pairs(module: nn.Module) -> list[tuple[str, str]]:
    """``(conv name, bn name)`` of the children of ``module`` that the forward applies one after the other."""
    children = dict(module.named_children())
    if isinstance(module, nn.Sequential):
        names = list(children)
        return [(a, b) for a, b in zip(names, names[1:], strict=False)
                if isinstance(children[a], nn.Conv2d) and isinstance(children[b], nn.BatchNorm2d)]  # fmt: skip
    pairs = []
    for name, child in children.items():  # ResNet blocks: conv1 -> bn1, conv2 -> bn2, conv3 -> bn3
        m = re.fullmatch(r"bn(\d+)", name)
        conv = f"conv{m[1]}" if m else None
        if m and isinstance(child, nn.BatchNorm2d) and isinstance(children.get(conv), nn.Conv2d):
            pairs.append((conv, name))
    return pairs


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BN that directly follows a convolution into it, in place; the model must be in eval mode (its BN
    uses the running statistics). Returns the number of BN layers folded."""
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (BN on its running statistics)")
    folded = 0
    for module in list(model.modules()):
        for conv_name, bn_name in _pairs(module):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(module, bn_name, nn.Identity())
            folded += 1
    return folded
