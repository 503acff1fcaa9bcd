"""Device choice shared by the torch stages, and whether the hardware runs bf16 natively (a CUDA GPU with bf16
support, or a CPU with AVX-512 BF16 / AMX); whether bf16 *pays* is measured: ``rpc.utils.precision``."""

from __future__ import annotations

from pathlib import Path

import torch


def pick_device(setting: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> this process's GPU (``local_rank`` under torchrun) when CUDA is present, else CPU; anything
    else is passed to ``torch.device``. A device that is not there (``cuda`` without a visible GPU, ``cuda:3`` on a
    2-GPU machine) or an unknown name is a one-line :class:`DataError`."""
    from rpc.utils.io import DataError

    if setting == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(setting)
    except RuntimeError:
        raise DataError(f"--device {setting}: not a device name; use auto, cpu, cuda or cuda:<index>") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DataError(f"--device {setting}: no CUDA GPU is visible on this machine; use --device cpu (or auto)")
        if device.index is not None and device.index >= count:
            raise DataError(f"--device {setting}: this machine shows {count} GPU(s) (cuda:0..cuda:{count - 1})")
    return device


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)  # emulated bf16 (before Ampere) is slow
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(cpu, name, lambda: False)() for name in checks)
    return False


def make_deterministic() -> None:
    """Deterministic kernels for a GPU run (CPU kernels are deterministic for a fixed thread count already): cuBLAS's
    fixed workspace (set before CUDA starts), torch's deterministic algorithms (an op without one raises), no cuDNN
    autotuning."""
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


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
