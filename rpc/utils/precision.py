"""``amp: auto`` decided by measurement: bf16 autocast (+ channels-last) only where it is faster for this work.

A rule from CPU flags is not enough: with AMX a ResNet step in bf16 runs much faster than fp32, with AVX-512
BF16 alone bf16 convolutions can run slower than fp32 (docs/speed.md), and a model with fp32 side branches may
gain on one machine and lose on another. So on a CPU with native bf16, ``auto`` times the stage's own step both
ways (after one warm-up each, the median of three alternating runs) and keeps bf16 only if it is at least 10 %
faster. The answer is cached per machine and workload in ``$RPC_CACHE_DIR/precision.json`` (default
``~/.cache/rpc-wsss``), so each stage calibrates once per machine. CUDA: bf16 where the GPU supports it (no
timing). Without native bf16 (most laptops; bf16 is emulated there): fp32, no timing.

The layout fp32 runs in is decided the same way where a stage lets it vary (the classifier and the maps:
:func:`decide_channels_last`, fp32 timed in channels-last and in the default layout); bf16 always runs in
channels-last, oneDNN's fast layout for it, and the bf16 decision compares it with fp32 in the chosen layout.

The key holds what changes the answer: the decision, the workload (stage, model, sizes), the CPU model and flags,
the torch version, the thread count, ``ONEDNN_MAX_CPU_ISA`` and :data:`CALIBRATION_VERSION`. ``amp: bf16`` /
``none`` skip the bf16 timing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from rpc.utils.device import cpu_identity, native_bf16
from rpc.utils.io import write_json_atomic

MIN_GAIN = 0.10  # bf16 must be at least this much faster than fp32
# Part of every cached decision's key: a change to how the steps are timed makes each machine measure again.
# 2: the classifier and the maps time fp32 in the layout decide_channels_last picked (before: the default layout).
CALIBRATION_VERSION = 2

logger = logging.getLogger(__name__)


def cache_root() -> Path | None:
    """``$RPC_CACHE_DIR`` or ``~/.cache/rpc-wsss``: this machine's cache (precision decisions, pretrained
    backbones); None without a home folder."""
    root = os.environ.get("RPC_CACHE_DIR")
    if not root:
        try:
            root = Path.home() / ".cache" / "rpc-wsss"
        except RuntimeError:  # no home directory can be determined
            return None
    return Path(root)


def cache_path() -> Path | None:
    """``<cache_root>/precision.json``; None without a home folder."""
    root = cache_root()
    return None if root is None else root / "precision.json"


def _time(step: Callable[[bool], None], flag: bool) -> float:
    t0 = time.perf_counter()
    step(flag)
    return time.perf_counter() - t0


def measure(step: Callable[[bool], None], repeats: int = 3) -> tuple[float, float]:
    """Median seconds of ``step(False)`` and ``step(True)``: one warm-up each, then ``repeats`` alternating runs."""
    step(False)
    step(True)
    off, on = [], []
    for _ in range(repeats):
        off.append(_time(step, False))
        on.append(_time(step, True))
    return statistics.median(off), statistics.median(on)


def model_step(get_model: Callable[[], torch.nn.Module], loss: Callable, device: torch.device,
               backward: bool = True, channels_last: Callable[[bool], bool] = bool) -> Callable[..., None]:
    """The ``step(bf16, channels_last=None)`` that :func:`decide_bf16` and :func:`decide_channels_last` time, for
    a model: ``loss(model, memory_format)`` under autocast (bf16 or not) on the model from ``get_model()`` (called
    once, on the first step, so nothing is built when nothing is timed; give a copy when the stage's own model
    must stay untouched), then its backward (``backward=False``: inference mode, no backward). The model is in
    channels-last when ``channels_last`` says so (None: when the ``channels_last(bf16)`` given here says so);
    torch's random state is left as it was."""
    model = []

    def step(bf16: bool, layout: bool | None = None) -> None:
        if not model:
            with torch.random.fork_rng(devices=[]):
                model.append(get_model())
        cl = channels_last(bf16) if layout is None else layout
        fmt = torch.channels_last if cl else torch.contiguous_format
        m = model[0].to(memory_format=fmt)
        with (contextlib.nullcontext() if backward else torch.inference_mode()), torch.random.fork_rng(devices=[]):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = loss(m, fmt)
            if backward:
                m.zero_grad(set_to_none=True)
                out.backward()

    return step


def _cached_choice(decision: str, workload: dict, step: Callable[[bool], None], choose, names: tuple[str, str],
                   describe) -> bool:  # fmt: skip
    """The cached answer of ``decision`` for ``workload`` on this machine, else ``choose(*measure(step))``
    (timed, then cached; a cache that cannot be written costs a measurement per job, nothing more).
    ``names``: the two timings' names in the cache; ``describe(choice)``: the answer in words, for the log."""
    key = {"decision": decision, "workload": workload, "cpu": cpu_identity(), "torch": torch.__version__,
           "calibration": CALIBRATION_VERSION, "threads": torch.get_num_threads(),
           "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "")}  # fmt: skip
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_path()
    cache = _read_cache(path)
    if digest in cache:
        return bool(cache[digest]["choice"])
    timing = dict(zip(names, measure(step), strict=True))
    choice = bool(choose(*timing.values()))
    try:
        if path is None:
            raise OSError("no home directory; set RPC_CACHE_DIR")
        cache = _read_cache(path)  # another job may have written meanwhile
        cache[digest] = {"choice": choice, **{k: round(v, 4) for k, v in timing.items()}, "key": key}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, cache)
        where = f"cached in {path}"
    except OSError as exc:
        where = f"not cached: {exc}"
    times = ", ".join(f"{k.removesuffix('_s')} {v:.3f} s" for k, v in timing.items())
    logger.info(f"{decision} auto: {times} per step -> {describe(choice)} ({where})")
    return choice


def decide_bf16(setting: str, device: torch.device, workload: dict, step: Callable[[bool], None]) -> bool:
    """Whether to run bf16 autocast (in channels-last). ``setting``: ``auto`` | ``bf16`` | ``none``.
    ``workload``: what identifies the work (JSON-serialisable); ``step(bf16)``: one representative step of it
    (fp32 in the layout the stage would run fp32 in), run only when ``auto`` has to measure (it must not change
    the model the stage goes on to use). bf16 is kept if at least :data:`MIN_GAIN` faster."""
    if setting not in ("auto", "bf16", "none"):
        raise ValueError(f"precision must be auto, bf16 or none, got {setting!r}")
    if setting != "auto":
        return setting == "bf16"
    if not native_bf16(device):
        return False
    if device.type != "cpu":
        return True
    return _cached_choice("amp", workload, step, lambda fp32, bf16: bf16 < (1 - MIN_GAIN) * fp32,
                          ("fp32_s", "bf16_s"), lambda bf16: "bf16" if bf16 else "fp32")  # fmt: skip


def decide_channels_last(device: torch.device, workload: dict, step: Callable[[bool], None]) -> bool:
    """Whether fp32 runs in channels-last: on a GPU yes (cuDNN's fast layout), untimed; on a CPU by timing
    ``step(channels_last)`` in fp32 both ways, cached like :func:`decide_bf16`, channels-last if it is faster.
    Machines differ in which layout is faster for which model (docs/speed.md), hence the timing."""
    if device.type != "cpu":
        return True
    return _cached_choice("fp32 layout", workload, step, lambda default, cl: cl < default,
                          ("default_layout_s", "channels_last_s"),
                          lambda cl: "channels-last" if cl else "default layout")  # fmt: skip


def decide_precision_and_layout(amp: str, device: torch.device, workload: dict, step: Callable[..., None],
                                layout: str = "auto") -> tuple[bool, bool]:  # fmt: skip
    """``(bf16, channels_last)`` for a stage whose layout may vary. ``step(bf16, channels_last)``: one step (see
    :func:`model_step`). ``layout``: ``on`` / ``off`` fix it (the bf16 timing then uses it too); ``auto``: bf16
    runs in channels-last, fp32 in the layout :func:`decide_channels_last` times faster (not timed when ``amp`` is
    ``bf16``), and the bf16 decision compares bf16 with fp32 in that layout."""
    if layout not in ("auto", "on", "off"):
        raise ValueError(f"channels_last must be auto, on or off, got {layout!r}")
    if layout != "auto":
        fixed = layout == "on"
        return decide_bf16(amp, device, workload, lambda bf16: step(bf16, fixed)), fixed
    fp32_cl = amp == "bf16" or decide_channels_last(device, workload, lambda cl: step(False, cl))
    bf16 = decide_bf16(amp, device, workload, lambda bf16: step(bf16, bf16 or fp32_cl))
    return bf16, bf16 or fp32_cl


def _read_cache(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
