"""Feature fusion of the stage network: SIPE's hierarchical features, the paper's SFA module (Eq. 9-10), and
the Table 5 alternatives.

All variants take the per-layer backbone features ``F_k`` and return the fused feature ``F_s`` of shape
``(N, D, h, w)`` at stride 16, ``D = sum of the side channels of the feature layers``. Two sets of layers:
``feature_layers`` (the side projections ``F_s`` concatenates) and ``layers`` (the attention maps ``a_k`` that
make ``S``). For RPC both are the SFA's layers 2-4 (Eq. 10 multiplies S onto the layers of Eq. 9; Table 8);
without SFA, SIPE's layers 1-4 (docs/method.md section 0).

- ``none``: SIPE: ``F_s = concat_k n_k`` with ``n_k = normalise(side_k(F_k))`` (unit length per pixel).
- ``sfa``: ``a_k = ReLU(BN(conv1x1_{C_k->1}(F_k)))`` for k in ``layers``, ``S = prod_k a_k`` (multiplicative
  fusion, Eq. 9), ``F_s = concat_k (S * n_k)`` over ``feature_layers`` (Eq. 10). Where S enters
  (``placement``): ``weight`` (the default, docs/method.md section 0 clause a) multiplies after the per-pixel
  normalisation: S scales every channel of a pixel alike, so it cancels in each cosine and acts through its
  weight in the prototype averages (and where it is 0); the gradient of the losses reaches ``θ_k`` and the BN
  affine through the prototypes. ``gate`` (an ablation only: under it SFA cannot learn) multiplies before the
  normalisation, which cancels S except where it is 0: ``F_s = concat_k 1(S > 0) n_k``; no gradient passes a
  0/1 gate, so its convolutions and BN affine are then frozen (the BN statistics still follow the data).
- ``spatial``: each layer weighted by its own map: ``F_s = concat_k (a_k * n_k)`` (no product; a feature layer
  without an attention map keeps ``n_k``).
- ``self_attention``: a non-local block over ``concat_k n_k`` (Table 5's self-attention).

Gradients: the side projections see detached backbone features, exactly as SIPE's side branches
(``side_k(x_k.detach())``). The attention branch sees them undetached by default (``attention_grad=True``): the
paper's multiplicative fusion "co-optimize[s] the parameters of each layer" (Sec. 4.3), so the gradient of ``S``
reaches the trainable backbone layers (3-4; layers 1-2 are detached in the backbone regardless).

Interpretation: the BN of each attention branch starts at weight 0.5, bias 1, so that ``a_k`` starts mostly
positive and ``S`` does not switch off most pixels at initialisation (a product of three ReLU maps with a zero
bias would be zero on about 7/8 of the pixels).

Initial weights: with ``seed`` given, each convolution draws from a generator keyed by ``(seed, key + name)``
(``rpc.models.seeding``), so the side projection of a layer starts the same with or without SFA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rpc.models.seeding import keyed_init
from rpc.utils.config_schema import allowed

ATTENTIONS = allowed("model", "attention")
PLACEMENTS = allowed("model", "sfa_placement")  # where SFA's map S enters F_s (module docstring)


def side_channels(depth: int) -> dict[int, int]:
    """SIPE's side projections (R50: layer1 256->128, layer2 512->128, layer3 1024->256, layer4 2048->256);
    ResNet-18/34 (4x narrower layers) get a quarter of that."""
    base = {1: 128, 2: 128, 3: 256, 4: 256}
    return base if depth in (50, 101) else {k: v // 4 for k, v in base.items()}


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block, ``(N, D, h, w) -> (N, D, h, w)``; output projection zero-initialised
    so that the block starts as the identity."""

    def __init__(self, dim: int):
        super().__init__()
        inner = max(dim // 2, 1)
        self.theta, self.phi, self.g = (nn.Conv2d(dim, inner, 1, bias=False) for _ in range(3))
        self.out = nn.Conv2d(inner, dim, 1, bias=False)
        nn.init.zeros_(self.out.weight)
        self.scale = inner**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        q = self.theta(x).flatten(2).transpose(1, 2)  # (N, hw, inner)
        k = self.phi(x).flatten(2)  # (N, inner, hw)
        v = self.g(x).flatten(2).transpose(1, 2)  # (N, hw, inner)
        attn = torch.softmax(q @ k * self.scale, dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(n, -1, h, w)
        return x + self.out(y)


class FeatureFusion(nn.Module):
    """Side projections + attention variant -> ``F_s``.

    ``forward(features)``: ``features`` is ``[F1, F2, F3, F4]`` from the backbone (detached for the side
    projections, as SIPE's side branches are; for the attention branch only without ``attention_grad``);
    returns ``(F_s (N, D, h, w), S (N, 1, h, w) or None)``. ``layers``: the attention maps' layers;
    ``feature_layers``: the side projections' layers (default: the same as ``layers``).
    """

    def __init__(
        self,
        in_channels: tuple[int, ...],
        depth: int,
        layers=(2, 3, 4),
        attention: str = "sfa",
        attention_grad: bool = True,
        feature_layers=None,
        placement: str = "weight",
        seed: int | None = None,
        key: str = "fusion",
    ):
        super().__init__()
        self.attention_grad = attention_grad
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        if placement not in PLACEMENTS:
            raise ValueError(f"sfa_placement must be one of {PLACEMENTS}, got {placement!r}")
        feature_layers = layers if feature_layers is None else feature_layers
        for name, value in (("layers", layers), ("feature_layers", feature_layers)):
            if not value or any(k not in (1, 2, 3, 4) for k in value):
                raise ValueError(f"model.{name} must be a non-empty subset of 1..4, got {list(value)}")
        self.layers, self.attention, self.placement = tuple(sorted(layers)), attention, placement
        self.feature_layers = tuple(sorted(feature_layers))
        out = side_channels(depth)

        def conv(name: str, c_in: int, c_out: int) -> nn.Conv2d:
            with keyed_init(seed, f"{key}.{name}"):
                return nn.Conv2d(c_in, c_out, 1, bias=False)

        self.side = nn.ModuleDict({str(k): conv(f"side{k}", in_channels[k - 1], out[k]) for k in self.feature_layers})
        self.out_channels = sum(out[k] for k in self.feature_layers)
        if attention in ("sfa", "spatial"):
            self.att_conv = nn.ModuleDict({str(k): conv(f"att{k}", in_channels[k - 1], 1) for k in self.layers})
            self.att_bn = nn.ModuleDict({str(k): nn.BatchNorm2d(1) for k in self.layers})
            for bn in self.att_bn.values():
                nn.init.constant_(bn.weight, 0.5)
                nn.init.constant_(bn.bias, 1.0)
            if attention == "sfa" and placement == "gate":  # the ablation: no gradient ever passes a 0/1 gate, so
                # nothing could train it (and DDP requires a gradient for every trainable parameter)
                for param in [*self.att_conv.parameters(), *self.att_bn.parameters()]:
                    param.requires_grad_(False)
        if attention == "self_attention":
            with keyed_init(seed, f"{key}.non_local"):
                self.non_local = NonLocalBlock(self.out_channels)

    def attention_maps(self, feats: list[torch.Tensor], size) -> dict[int, torch.Tensor]:
        """``{k: a_k}`` for the attention layers, each ``(N, 1, h, w)`` at the stride-16 size."""
        maps = {}
        for k in self.layers:
            a = F.relu(self.att_bn[str(k)](self.att_conv[str(k)](feats[k - 1])))
            maps[k] = F.interpolate(a, size, mode="bilinear", align_corners=False) if a.shape[-2:] != size else a
        return maps

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        attention_feats = feats if self.attention_grad else [f.detach() for f in feats]
        feats = [f.detach() for f in feats]
        size = feats[-1].shape[-2:]
        normed = {}
        for k in self.feature_layers:
            s = self.side[str(k)](feats[k - 1])
            s = s / (torch.norm(s, dim=1, keepdim=True) + 1e-5)
            normed[k] = F.interpolate(s, size, mode="bilinear", align_corners=False) if s.shape[-2:] != size else s
        if self.attention == "none":
            return torch.cat(list(normed.values()), 1), None
        if self.attention == "self_attention":
            return self.non_local(torch.cat(list(normed.values()), 1)), None
        maps = self.attention_maps(attention_feats, size)
        if self.attention == "spatial":
            return torch.cat([maps[k] * n if k in maps else n for k, n in normed.items()], 1), None
        s_map = None
        for a in maps.values():
            s_map = a if s_map is None else s_map * a
        factor = s_map if self.placement == "weight" else (s_map > 0).to(s_map.dtype)
        return torch.cat([factor * n for n in normed.values()], 1), s_map

    def num_attention_weights(self) -> int:
        """Conv weights of the attention branch (paper Table 5 counts 3.584K for SFA on R50 layers 2-4)."""
        if not hasattr(self, "att_conv"):
            return 0
        return sum(c.weight.numel() for c in self.att_conv.values())
