"""bf16 DeepLab training on CPUs: mmengine's ``AmpOptimWrapper`` refuses to run without an accelerator, so CPU
bf16 autocast gets its own small optimiser wrapper, plus a hook that puts the model in channels-last (oneDNN's
fast layout for bf16 convolutions). bf16 needs no loss scaling, so the wrapper only adds the autocast context.

Whether bf16 pays for DeepLab depends on the CPU (with AMX it is much faster than fp32, with AVX-512 BF16 alone
slower: docs/speed.md), which is why ``amp: auto`` times the step (``rpc.utils.precision``) instead of trusting
the CPU flags.

On CUDA, ``amp: bf16`` uses mmengine's own ``AmpOptimWrapper`` in bfloat16 with the same channels-last hook;
``auto`` keeps the config's fp32 wrapper there (``benchmarks/gpu.sh`` times both; docs/speed.md).
"""

from __future__ import annotations

import contextlib

from rpc.segmentation.compat import ensure_mmseg

ensure_mmseg()

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from mmseg.registry import HOOKS, MODELS, OPTIM_WRAPPERS  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

from rpc.utils.code_digest import code_digest  # noqa: E402
from rpc.utils.device import native_bf16  # noqa: E402
from rpc.utils.precision import decide_bf16, model_step  # noqa: E402


@OPTIM_WRAPPERS.register_module()
class CPUBf16OptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward/loss context runs under CPU bf16 autocast."""

    @contextlib.contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast("cpu", dtype=torch.bfloat16):
            yield


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Before training (and after a resume has loaded the weights): the model's parameters in channels-last."""

    priority = "LOWEST"

    def before_train(self, runner) -> None:
        runner.model.to(memory_format=torch.channels_last)


def calibration_step(cfg: Config):
    """``step(bf16)``: one forward/backward of a freshly built model of ``cfg`` on a random batch of the
    training batch size at the crop size, for ``amp: auto``."""
    batch = int(cfg.train_dataloader.batch_size)
    h, w = cfg.model.data_preprocessor.get("size") or (cfg.get("crop_size") or (128, 128))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, h, w, generator=g)
    y = torch.randint(0, int(cfg.model.decode_head.num_classes), (batch, h, w), generator=g)

    def build():
        register_all_modules(init_default_scope=True)  # what the Runner does with default_scope = "mmseg"
        return MODELS.build(cfg.model).train()

    def loss(model, fmt):
        logits = model.decode_head(model.backbone(x.contiguous(memory_format=fmt)))
        logits = torch.nn.functional.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return torch.nn.functional.cross_entropy(logits.float(), y)

    return model_step(build, loss, torch.device("cpu"))


def wants_bf16(cfg: Config, amp: str) -> bool:
    """Whether this run trains in bf16: ``amp`` bf16, or on a CPU auto and a timed step says it pays (cached).
    CUDA: only ``amp: bf16`` (a GPU without bf16 is an error); ``auto`` is fp32 there (module docstring)."""
    if amp not in ("auto", "bf16", "none"):
        raise ValueError(f"precision must be auto, bf16 or none, got {amp!r}")
    if torch.cuda.is_available():
        if amp == "bf16" and not native_bf16(torch.device("cuda")):
            raise ValueError(f"amp bf16: {torch.cuda.get_device_name()} has no bf16 support; use auto or none")
        return amp == "bf16"
    workload = {"stage": "deeplab", "code": code_digest("rpc.segmentation.train"), "model": cfg.model.to_dict(),
                "batch": int(cfg.train_dataloader.batch_size)}  # fmt: skip
    return decide_bf16(amp, torch.device("cpu"), workload, calibration_step(cfg))


def use_bf16(cfg: Config) -> None:
    """Switch ``cfg`` to bf16 autocast and a channels-last model: mmengine's ``AmpOptimWrapper`` (bfloat16) on
    CUDA, :class:`CPUBf16OptimWrapper` on a CPU. The config's optimiser, clipping and the like are kept. bf16 has
    fp32's range, so the wrapper's loss scaler is off (it would skip steps with inf gradients, which fp32 does not).
    The hook turns the model channels-last after mmengine has wrapped it: under DDP that costs a gradient copy
    per bucket (torch warns of mismatched strides); not measured on GPUs."""
    if torch.cuda.is_available():
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.dtype = "bfloat16"
        cfg.optim_wrapper.loss_scale = dict(enabled=False)
    else:
        cfg.optim_wrapper.type = "CPUBf16OptimWrapper"
    cfg.custom_hooks = [*cfg.get("custom_hooks", []), dict(type="ChannelsLastHook")]
