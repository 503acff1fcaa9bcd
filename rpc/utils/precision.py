"""``amp: auto`` decided by measurement: bf16 autocast (+ channels-last) only where it is faster for this work.

A rule from CPU flags is not enough: with AMX a ResNet step in bf16 runs 2-3.5x faster than fp32, with AVX-512
BF16 alone bf16 convolutions run about 2x *slower* than fp32 (measured: DeepLabv2 R18 step 0.28 vs 1.01 s on AMX,
1.45 vs 0.73 s with oneDNN limited to AVX-512 BF16), and a model with fp32 side branches may gain on one
machine and lose on another. So on a CPU with native bf16, ``auto`` times the stage's own step both ways (after
one warm-up each, the median of three alternating runs) and keeps bf16 only if it is at least 10 % faster. The
answer is cached per machine and workload in ``$RPC_CACHE_DIR/precision.json`` (default
``~/.cache/rpc-wsss``), so each stage calibrates once per machine. CUDA: bf16 where the GPU supports it (no
timing). Without native bf16 (most laptops; bf16 is emulated there): fp32, no timing.

The key holds what changes the answer: the workload (stage, model, sizes), the CPU model and flags, the torch
version, the thread count and ``ONEDNN_MAX_CPU_ISA``. ``amp: bf16`` / ``none`` skip all of this.
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

from rpc.utils.device import native_bf16
from rpc.utils.io import write_json_atomic

MIN_GAIN = 0.10  # bf16 must be at least this much faster than fp32

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


def cpu_identity() -> dict:
    """The CPU model name and the flags that decide bf16 speed (Linux /proc/cpuinfo; empty elsewhere)."""
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("amx_bf16", "amx_tile", "amx_fp16", "avx512_bf16", "avx512_fp16", "avx512f", "avx2")
    return {"model": model, "flags": [f for f in wanted if f in flags]}


def _time(step: Callable[[bool], None], bf16: bool) -> float:
    t0 = time.perf_counter()
    step(bf16)
    return time.perf_counter() - t0


def measure(step: Callable[[bool], None], repeats: int = 3) -> dict:
    """Seconds per ``step(bf16)`` for fp32 and bf16: one warm-up each, then the median of ``repeats``
    alternating runs."""
    step(False)
    step(True)
    fp32, bf16 = [], []
    for _ in range(repeats):
        fp32.append(_time(step, False))
        bf16.append(_time(step, True))
    return {"fp32_s": statistics.median(fp32), "bf16_s": statistics.median(bf16)}


def model_step(get_model: Callable[[], torch.nn.Module], loss: Callable, device: torch.device,
               backward: bool = True, channels_last: Callable[[bool], bool] = bool) -> Callable[[bool], None]:
    """The ``step(bf16)`` that :func:`decide_bf16` times, for a model: ``loss(model, memory_format)`` under
    autocast (bf16 or not) on the model from ``get_model()`` (called once, on the first step, so nothing is built
    when nothing is timed; give a copy when the stage's own model must stay untouched), then its backward
    (``backward=False``: inference mode, no backward). The model is in channels-last when
    ``channels_last(bf16)``; torch's random state is left as it was."""
    model = []

    def step(bf16: bool) -> None:
        if not model:
            with torch.random.fork_rng(devices=[]):
                model.append(get_model())
        fmt = torch.channels_last if channels_last(bf16) else torch.contiguous_format
        m = model[0].to(memory_format=fmt)
        with (contextlib.nullcontext() if backward else torch.inference_mode()), torch.random.fork_rng(devices=[]):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = loss(m, fmt)
            if backward:
                m.zero_grad(set_to_none=True)
                out.backward()

    return step


def decide_bf16(setting: str, device: torch.device, workload: dict, step: Callable[[bool], None]) -> bool:
    """Whether to run bf16 autocast (+ channels-last). ``setting``: ``auto`` | ``bf16`` | ``none``.
    ``workload``: what identifies the work (JSON-serialisable); ``step(bf16)``: one representative step of it,
    run only when ``auto`` has to measure (it must not change the model the stage goes on to use)."""
    if setting not in ("auto", "bf16", "none"):
        raise ValueError(f"precision must be auto, bf16 or none, got {setting!r}")
    if setting != "auto":
        return setting == "bf16"
    if not native_bf16(device):
        return False
    if device.type != "cpu":
        return True
    key = {"workload": workload, "cpu": cpu_identity(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "")}  # fmt: skip
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_path()
    cache = _read_cache(path)
    if digest in cache:
        return bool(cache[digest]["bf16"])
    timing = measure(step)
    choice = timing["bf16_s"] < (1 - MIN_GAIN) * timing["fp32_s"]
    try:  # a cache that cannot be written (read-only or missing home) costs a measurement per job, nothing more
        if path is None:
            raise OSError("no home directory; set RPC_CACHE_DIR")
        cache = _read_cache(path)  # another job may have written meanwhile
        cache[digest] = {"bf16": choice, **{k: round(v, 4) for k, v in timing.items()}, "key": key}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, cache)
        where = f"cached in {path}"
    except OSError as exc:
        where = f"not cached: {exc}"
    logger.info(f"amp auto: fp32 {timing['fp32_s']:.3f} s, bf16 {timing['bf16_s']:.3f} s per step -> "
          f"{'bf16' if choice else 'fp32'} ({where})")  # fmt: skip
    return choice


def _read_cache(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
