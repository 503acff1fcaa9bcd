"""The prototype math of SIPE/RPC as pure functions (docs/method.md, "Seeds and prototypes").

Shapes: N images, K = C + 1 channels (0 = background), E/D feature channels, h x w feature grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rpc.utils.config_schema import allowed

BACKGROUNDS = allowed("model", "background")


def normalized_cam(logits: torch.Tensor, labels: torch.Tensor | None, background: str = "all") -> torch.Tensor:
    """CAM logits ``(N, C, h, w)`` -> ``(N, C+1, h, w)``: ``M_c = ReLU(A_c) / (max_hw + 1e-5)``, background
    ``M_0 = 1 - max_c M_c``, absent classes zeroed by the image labels ``(N, C)`` (if given).

    ``background`` says which classes ``M_0`` looks at: ``all`` (SIPE: the max over all C maps, taken *before*
    the label mask, so a strong response of an absent class still lowers the background) or ``present`` (the
    max over the image's own classes only, i.e. after the label mask).
    """
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    cam = F.relu(logits)
    cam = cam / (cam.amax(dim=(2, 3), keepdim=True) + 1e-5)
    if background == "all":
        bkg = 1.0 - cam.amax(dim=1, keepdim=True)
    if labels is not None:
        cam = cam * labels[:, :, None, None]
    if background == "present":
        bkg = 1.0 - cam.amax(dim=1, keepdim=True)
    return torch.cat([bkg, cam], 1)


SEED_CAMS = allowed("model", "inference_seed_cam")


def seed_cam(logits: torch.Tensor, labels: torch.Tensor, label_mask: torch.Tensor, rule: str, background: str = "all"):
    """The class maps the inference seeds compete with, ``(N, C+1, h, w)`` from CAM logits ``(N, C, h, w)``.

    ``masked``: the label-masked normalised CAM (as in training). ``all_classes`` (SIPE's ``make_cam``): every
    class's map, absent ones included, times the validity (``label_mask[:, :1]``); a pixel an absent class wins
    then gets no seed once :func:`correlation_seeds` masks the seeds by the labels.
    """
    if rule not in SEED_CAMS:
        raise ValueError(f"inference_seed_cam must be one of {SEED_CAMS}, got {rule!r}")
    if rule == "masked":
        return normalized_cam(logits, labels, background) * label_mask
    return normalized_cam(logits, None, background) * label_mask[:, :1]


def correlation_seeds(
    cam: torch.Tensor, features: torch.Tensor, label_mask: torch.Tensor, bg_scale: float = 0.5
) -> torch.Tensor:
    """SIPE's seeds: one-hot ``(N, K, h, w)``.

    For every pixel i and class c, an IoU-like score between the pixel's correlation row
    ``corr[i, :] = ReLU(cos(f_i, f_j))`` and the class map ``cam[c, :]``:
    ``inter = sum_j corr[i, j] cam[c, j]``, ``union = sum_j corr[i, j] + sum_j cam[c, j] - inter``.
    The background score is scaled by ``bg_scale``; argmax over classes gives the seed, masked by
    ``label_mask`` ``(N, K, h, w)`` (channel 0 = valid pixels, channel c = valid pixels of present classes).
    Computed with matrix products ``(K x HW) @ (HW x HW)``: no ``K x HW x HW`` tensor.
    """
    n, k, h, w = cam.shape
    f = F.normalize(features.flatten(2).float(), dim=1, eps=1e-5)  # (N, E, HW)
    corr = F.relu(f.transpose(1, 2) @ f)  # (N, HW, HW), symmetric
    m = cam.flatten(2).float()  # (N, K, HW)
    inter = m @ corr  # (N, K, HW): inter[c, i] = sum_j m[c, j] corr[j, i]
    union = corr.sum(1, keepdim=True) + m.sum(2, keepdim=True) - inter
    iou = inter / union.clamp_min(1e-5)
    iou[:, 0] *= bg_scale
    seeds = F.one_hot(iou.argmax(1), k).transpose(1, 2).reshape(n, k, h, w).to(cam.dtype)
    return seeds * label_mask


def prototypes(weights: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Masked average: ``P = sum_i W[c, i] F[:, i] / HW`` -> ``(N, K, D)``. ``weights`` ``(N, K, h, w)`` are
    the seeds (SIPE) or the normalised CAM (paper Eq. 6); the 1/HW scale does not matter to cosines."""
    hw = weights.shape[-1] * weights.shape[-2]
    return weights.flatten(2).float() @ features.flatten(2).float().transpose(1, 2) / hw


def specific_map(prototypes_: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """``IS_c = ReLU(cos(F_s, P_c))``: ``(N, K, D)`` x ``(N, D, h, w)`` -> ``(N, K, h, w)``.
    A zero prototype (absent class) gives a zero map."""
    n, d, h, w = features.shape
    p = F.normalize(prototypes_, dim=2, eps=1e-5)
    f = F.normalize(features.flatten(2).float(), dim=1, eps=1e-5)
    return F.relu(p @ f).reshape(n, -1, h, w)


def label_mask(labels: torch.Tensor, valid: torch.Tensor | None, size) -> torch.Tensor:
    """``(N, K, h, w)``: validity (``(N, H, W)`` resized with nearest, or ones) times ``[1, y_1 .. y_C]``."""
    n = labels.shape[0]
    if valid is None:
        v = labels.new_ones((n, 1, *size))
    else:
        v = F.interpolate(valid[:, None].float(), size, mode="nearest")
    return v * torch.cat([labels.new_ones(n, 1), labels], 1)[:, :, None, None]
