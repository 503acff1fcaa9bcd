"""The RPC model (paper Sec. 4) and the systems it is compared with, as configurations of one model.

A *stage* (``StageNet``) is SIPE's network: a ResNet trunk, a 1x1 classifier giving the CAM, fused features
``F_s`` (``rpc.models.attention``), seeds, image-specific prototypes and the specific map ``IS``.
``RPCModel`` chains K stages with their own parameters: stage k > 1 sees the image with the regions found by the
earlier stages erased at threshold alpha (Eq. 5); the RS-CAM is the element-wise max of the stages' maps (Eq. 8).

Presets (``PRESETS``): ``cam`` (plain CAM, Table 4 row 1), ``sipe`` (1 stage, SIPE's features of layers 1-4),
``rpc`` (2 stages; the side features of layers 2-4 weighted by SFA's map S from the same layers, Eq. 9-10). Every
ablation of Tables 4-9 is a field of ``ModelConfig``; the readings are settled in docs/method.md section 0.

``RPCModel(cfg, seed)`` draws each module's initial weights from a generator keyed by ``(seed, module)``
(``rpc.models.seeding``): configurations that differ in one module share every other module's initial weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rpc.models.attention import FeatureFusion
from rpc.models.backbone import FrozenBNResNet
from rpc.models.prototypes import (
    correlation_seeds,
    label_mask,
    normalized_cam,
    prototypes,
    seed_cam,
    specific_map,
)
from rpc.models.seeding import keyed_init
from rpc.utils.config_schema import check_section


@dataclass
class ModelConfig:
    """Every switch of the method. ``num_classes`` counts foreground classes only (VOC 20, COCO 80)."""

    num_classes: int = 20
    depth: int = 50
    weights: str = "imagenet"  # imagenet | none | path to a torchvision checkpoint
    method: str = "prototype"  # cam: plain CAM maps; prototype: SIPE/RPC specific maps
    num_stages: int = 2  # region-specific prototypes (Table 7: 1-3)
    attention: str = "sfa"  # none | spatial | self_attention | sfa (Table 5)
    layers: tuple[int, ...] = (2, 3, 4)  # layers S is computed from (SFA's fusion, Eq. 9, Table 8)
    # layers whose normalised side projections F_s concatenates: SIPE's hierarchical features 1-4 without SFA;
    # the rpc preset sets the SFA's own layers (Eq. 10; docs/method.md section 0)
    feature_layers: tuple[int, ...] = (1, 2, 3, 4)
    # weight: S multiplies the normalised side features, weights the prototype averages and learns (Eq. 10,
    # clause a) | gate: S before the normalisation, where it cancels except at 0; frozen: an ablation only
    sfa_placement: str = "weight"
    alpha: float = 0.7  # erasing threshold (Table 9)
    prototype_weights: str = "seeds"  # seeds (SIPE) | cam (paper Eq. 6 literally)
    gsc_target: str = "general"  # general: max of the stages' CAMs | stage1: stage 1's CAM
    seed_features: str = "auto"  # auto: layer4 in training, fused F_s at inference (SIPE) | layer4 | fused
    bg_scale: float = 0.5  # background score factor in the seed IoU (SIPE)
    background: str = "all"  # M_0 from all C maps before the label mask (SIPE) | present: image's classes only
    # SFA's attention sees the trainable backbone layers 3-4 (Sec. 4.3 "co-optimize", clause a) | False: detached
    # like SIPE's side branches. Under the gate no gradient passes S, so it then changes nothing
    attention_grad: bool = True
    # RS-CAM background: max = the max over the stages, as Eq. 8 for every channel (clause a) | stage1: stage 1's
    # background where stage 1 has features, the max elsewhere
    rs_background: str = "max"
    # all_classes: as SIPE's make_cam, the seed argmax at inference also sees the absent classes' maps (a pixel they
    # win gets no seed), then the seeds are label-masked | masked: from the label-masked CAM, as in training
    inference_seed_cam: str = "all_classes"

    def __post_init__(self):
        """Every field checked by the config schema's ``model`` section, where the allowed values and bounds are
        declared (the defaults are the ones above): a bad value is a ValueError naming ``model.<key>``."""
        self.layers = tuple(self.layers)
        self.feature_layers = tuple(self.feature_layers)
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
        values["weights"] = str(values["weights"])  # a path object names a file like a string
        check_section(values, "model", "model")


# Without SFA, F_s is SIPE's hierarchical features (layers 1-4); RPC's S and F_s use the SFA's layers 2-4 (Table 8)
PRESETS: dict[str, dict] = {
    "cam": dict(method="cam", num_stages=1, attention="none", layers=(1, 2, 3, 4)),
    "sipe": dict(method="prototype", num_stages=1, attention="none", layers=(1, 2, 3, 4)),
    "rpc": dict(method="prototype", num_stages=2, attention="sfa", layers=(2, 3, 4), feature_layers=(2, 3, 4)),
}


def config_from_dict(stored: dict) -> ModelConfig:
    """A ``ModelConfig`` from a model file's stored dict. Files written before ``feature_layers`` and
    ``sfa_placement`` existed built F_s from ``layers`` and weighted by S; every other field (the readings whose
    defaults changed with them included) is stored in every file, so they keep their own."""
    stored = dict(stored)
    stored.setdefault("feature_layers", stored.get("layers", ModelConfig.layers))
    stored.setdefault("sfa_placement", "weight")
    return ModelConfig(**stored)


def make_config(preset: str = "rpc", **overrides) -> ModelConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    return ModelConfig(**{**PRESETS[preset], **overrides})


def _fuse_flips(t: torch.Tensor) -> torch.Tensor:
    """``(2N, ...)`` ordered [img0, flip0, img1, flip1, ...] -> ``(N, ...)``: image + un-flipped flip."""
    return t[0::2] + t[1::2].flip(-1)


class StageNet(nn.Module):
    """One stage. ``forward(x, labels, valid, fuse_flip, seed_features)`` with ``x`` ``(N', 3, H, W)``,
    ``labels`` ``(N, C)``, ``valid`` ``(N, H, W)`` or None; with ``fuse_flip`` ``N' = 2N`` (image, flip pairs).

    Returns a dict: ``score (N', C)``, ``cam (N, C+1, h, w)`` (normalised, masked by validity and labels),
    ``label_mask (N, C+1, h, w)`` and, for the prototype method, ``seeds``, ``is_cam (N, C+1, h, w)``, ``s_map``
    and ``has_features (N, 1, h, w)`` (bool: F_s is not zero there). A pixel without features takes no seed and
    its ``is_cam`` is 0 in every channel: it carries no evidence from this stage.

    ``seed``/``key``: initial weights keyed by ``(seed, key.module)`` (``rpc.models.seeding``).
    """

    def __init__(self, cfg: ModelConfig, seed: int | None = None, key: str = "stage0"):
        super().__init__()
        self.cfg = cfg
        with keyed_init(seed, f"{key}.backbone"):
            self.backbone = FrozenBNResNet(cfg.depth, cfg.weights)
        with keyed_init(seed, f"{key}.classifier"):
            self.classifier = nn.Conv2d(self.backbone.channels[3], cfg.num_classes, 1, bias=False)
        self.fusion = (
            FeatureFusion(
                self.backbone.channels, cfg.depth, cfg.layers, cfg.attention, cfg.attention_grad,
                cfg.feature_layers, cfg.sfa_placement, seed=seed, key=f"{key}.fusion",
            )
            if cfg.method == "prototype"
            else None
        )

    def new_modules(self) -> list[nn.Module]:
        return [m for m in (self.classifier, self.fusion) if m is not None]

    def forward(self, x, labels, valid=None, fuse_flip=False, seed_features="layer4") -> dict:
        feats = self.backbone(x)
        logits = self.classifier(feats[3])
        out = {"score": logits.mean((2, 3))}
        fs = s_map = None
        if self.fusion is not None:
            fs, s_map = self.fusion(feats)
        f4 = feats[3]
        if fuse_flip:
            logits, f4 = _fuse_flips(logits), _fuse_flips(f4)
            fs = _fuse_flips(fs) if fs is not None else None
            s_map = _fuse_flips(s_map) if s_map is not None else None
        with torch.autocast(x.device.type, enabled=False):  # seeds/argmax in float32
            logits = logits.float()
            lm = label_mask(labels.float(), valid, logits.shape[-2:])
            cam = normalized_cam(logits, labels.float(), self.cfg.background) * lm
            out.update(cam=cam, label_mask=lm)
            if self.fusion is None:
                return out
            fs = fs.float()
            has_features = fs.abs().amax(1, keepdim=True) > 0  # S = 0 there: no direction, no evidence
            g = f4.float() if seed_features == "layer4" else fs
            # training: the label-masked CAM; inference: model.inference_seed_cam (SIPE: every class competes)
            rule = "masked" if self.training else self.cfg.inference_seed_cam
            seeds = correlation_seeds(seed_cam(logits, labels.float(), lm, rule, self.cfg.background), g, lm,
                                      self.cfg.bg_scale) * has_features
            weights = seeds if self.cfg.prototype_weights == "seeds" else cam
            out.update(seeds=seeds, is_cam=specific_map(prototypes(weights, fs), fs), s_map=s_map,
                       has_features=has_features)
        return out


def fuse_stage_maps(maps: list[torch.Tensor], has_features: list[torch.Tensor], background: str) -> torch.Tensor:
    """The RS-CAM (Eq. 8) from the stages' specific maps ``(N, K, h, w)`` and their ``has_features``
    ``(N, 1, h, w)``: the element-wise max over the stages that have features at a pixel. The maps are >= 0, so a
    stage without features there (all zeros) changes no max. ``background``: ``max`` (Eq. 8 for every channel) or
    ``stage1`` (stage 1's background where stage 1 has features, the max elsewhere). A pixel where no stage has
    features is 0 in every channel."""
    q = torch.stack([m * v for m, v in zip(maps, has_features, strict=True)]).amax(0)
    if background == "stage1" and len(maps) > 1:
        q = torch.cat([torch.where(has_features[0], maps[0][:, :1], q[:, :1]), q[:, 1:]], 1)
    return q


class RPCModel(nn.Module):
    """K stages with region-specific prototypes. ``forward`` returns ``{"stages": [stage dicts],
    "rs_cam": (N, C+1, h, w) or None, "erase_masks": [(N', 1, H, W) keep-masks of stages 2..K]}``."""

    def __init__(self, cfg: ModelConfig, seed: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.stages = nn.ModuleList(StageNet(cfg, seed, f"stage{k}") for k in range(cfg.num_stages))

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """``(backbone parameters, new-layer parameters)``, trainable ones only (new layers get 10x lr)."""
        backbone = [p for s in self.stages for p in s.backbone.parameters() if p.requires_grad]
        new = [p for s in self.stages for m in s.new_modules() for p in m.parameters() if p.requires_grad]
        return backbone, new

    def forward(self, x, labels, valid=None, fuse_flip=False) -> dict:
        seed_features = self.cfg.seed_features
        if seed_features == "auto":
            seed_features = "layer4" if self.training else "fused"
        stages, erase_masks, found = [], [], None
        for k, stage in enumerate(self.stages):
            xin = x
            if k > 0:  # Eq. 5: erase what the earlier stages found (max of their foreground CAMs >= alpha)
                up = F.interpolate(found, x.shape[-2:], mode="bilinear", align_corners=False)
                keep = (up < self.cfg.alpha).to(x.dtype).detach()
                if fuse_flip:  # the same region in the flipped copy
                    keep = torch.stack([keep, keep.flip(-1)], 1).flatten(0, 1)
                erase_masks.append(keep)
                xin = x * keep
            out = stage(xin, labels, valid, fuse_flip, seed_features)
            stages.append(out)
            fg = out["cam"][:, 1:].amax(1, keepdim=True).detach()
            found = fg if found is None else torch.maximum(found, fg)
        rs_cam = None
        if self.cfg.method == "prototype":
            rs_cam = fuse_stage_maps([s["is_cam"] for s in stages], [s["has_features"] for s in stages],
                                     self.cfg.rs_background)
        return {"stages": stages, "rs_cam": rs_cam, "erase_masks": erase_masks}

    def losses(self, out: dict, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``L = L_cls + L_aug + L_GSC`` (Eq. 4); returns each term and ``total``."""
        stages = out["stages"]
        labels = labels.float()
        l_cls = F.multilabel_soft_margin_loss(stages[0]["score"].float(), labels)
        l_aug = sum(
            (F.multilabel_soft_margin_loss(s["score"].float(), labels) for s in stages[1:]), l_cls.new_zeros(())
        )
        l_gsc = l_cls.new_zeros(())
        if self.cfg.method == "prototype":
            q = out["rs_cam"]
            q = q / (q.amax(dim=(2, 3), keepdim=True) + 1e-5)
            if self.cfg.gsc_target == "stage1" or len(stages) == 1:
                target = stages[0]["cam"]
            else:  # interpretation: general map = max of the stages' CAMs; its background 1 - max over stages
                # and classes = the min of the stages' backgrounds (each under model.background's rule)
                fg = torch.stack([s["cam"][:, 1:] for s in stages]).amax(0)
                bg = torch.stack([s["cam"][:, :1] for s in stages]).amin(0)
                target = torch.cat([bg, fg], 1)
            l_gsc = (q - target).abs().mean()
        return {"cls": l_cls, "aug": l_aug, "gsc": l_gsc, "total": l_cls + l_aug + l_gsc}

    @torch.no_grad()
    def maps(self, x_pairs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Inference on image/flip pairs ``(2N, 3, H, W)``: ``(final map (N, C+1, h, w), [per-stage maps])``.
        Final = RS-CAM for the prototype method, the normalised CAM for ``cam``. A CAM map's background is
        ``1 - max`` over the image's own classes (the maps hold only those), whatever ``model.background`` says:
        that switch concerns the seeds and the GSC target."""
        out = self.forward(x_pairs, labels, None, fuse_flip=True)
        if self.cfg.method == "prototype":
            return out["rs_cam"], [s["is_cam"] for s in out["stages"]]
        per_stage = [torch.cat([1 - s["cam"][:, 1:].amax(1, keepdim=True), s["cam"][:, 1:]], 1) for s in out["stages"]]
        return per_stage[0], per_stage


def config_to_dict(cfg: ModelConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["layers"] = list(cfg.layers)
    d["feature_layers"] = list(cfg.feature_layers)
    return d


__all__ = ["ModelConfig", "PRESETS", "RPCModel", "StageNet", "make_config", "config_from_dict", "config_to_dict",
           "fuse_stage_maps"]
