"""The DeepLabv2 decode head (ASPP-L), registered in mmseg's MODELS registry as ``DeepLabV2Head``.

docs/method.md: the SUM of four 3x3 convolutions with dilations 6/12/18/24 (padding = dilation), each mapping the
backbone's last feature map straight to the classes. Weights ~ N(0, 0.01), biases 0 (deeplab-pytorch).
mmseg has ASPP heads (DeepLabv3) but none of this form.
"""

from __future__ import annotations

from rpc.segmentation.compat import ensure_mmseg

ensure_mmseg()

import torch  # noqa: E402
from mmseg.models.decode_heads.decode_head import BaseDecodeHead  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from torch import nn  # noqa: E402

from rpc.segmentation.stored_config import settings_of  # noqa: E402


@MODELS.register_module()
class DeepLabV2Head(BaseDecodeHead):
    """``forward(inputs)``: ``inputs[in_index]`` ``(N, in_channels, h, w)`` -> logits ``(N, num_classes, h, w)`` =
    sum over d in ``dilations`` of conv3x3_d(x). ``channels`` is unused (kept for the BaseDecodeHead API). A
    setting neither this head nor ``BaseDecodeHead`` takes is a ``TypeError`` of one line naming it."""

    def __init__(self, dilations=(6, 12, 18, 24), **kwargs):
        unknown = sorted(set(kwargs) - settings_of(BaseDecodeHead))
        if unknown:
            raise TypeError(f"DeepLabV2Head: unknown setting {unknown[0]!r} (it takes: "
                            f"{', '.join(sorted(settings_of(DeepLabV2Head)))})")  # fmt: skip
        kwargs.setdefault("channels", kwargs["in_channels"])
        kwargs.setdefault("dropout_ratio", 0.0)
        kwargs["init_cfg"] = None  # initialised in init_weights
        super().__init__(**kwargs)
        del self.conv_seg  # the ASPP branches classify directly
        self.dilations = tuple(dilations)
        self.aspp = nn.ModuleList(
            nn.Conv2d(self.in_channels, self.out_channels, 3, padding=d, dilation=d, bias=True) for d in self.dilations
        )

    def init_weights(self):
        for conv in self.aspp:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, inputs) -> torch.Tensor:
        x = self._transform_inputs(inputs)
        return torch.stack([conv(x) for conv in self.aspp]).sum(0)
