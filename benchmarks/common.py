"""Helpers shared by the benchmark scripts: a VOC-sized test dataset, medians, machine facts, JSON output."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

import torch

from rpc.utils.device import cpu_identity
from rpc.utils.io import write_json_atomic

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("RPC_REALDATA", REPO.parent / "shared" / "realdata"))
OUT = REPO / "benchmarks" / "out"


def cpu_family_model() -> str:
    """``family <f> model <m>`` from /proc/cpuinfo (a VM's model name may say only "AMD EPYC": the family tells
    the generation, e.g. 25 = Zen 3/4, 26 = Zen 5); empty where unreadable."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("cpu family", "model") and key.strip() not in fields:
                fields[key.strip()] = value.strip()
    except OSError:
        return ""
    return f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')}" if fields else ""


def machine() -> dict:
    """The facts a timing depends on: cores, CPU model (and family) and bf16-relevant flags, threads, a oneDNN
    ISA limit."""
    cpu = cpu_identity()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu["model"],
        "cpu_family_model": cpu_family_model(),
        "cpu_flags": cpu["flags"],
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        "torch_threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def default_amp() -> str:
    """The benchmarks' default precision, by rule so that no benchmark job times a calibration: bf16 with AMX, fp32
    (``none``) without. A rule, not ``amp: auto``'s measurement: on an Intel CPU with AVX-512 BF16 alone bf16 was
    slower than fp32, on an AMD Zen 5 it is about 2x faster (pass ``--amp bf16`` there)."""
    return "bf16" if "amx_bf16" in cpu_identity()["flags"] else "none"


def median_time(fn, repeats: int, warmup: int = 0) -> tuple[float, list[float]]:
    """Median wall seconds of ``fn()`` over ``repeats`` runs (and all runs), after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def voc_sized_dataset(folder: Path, copies: int, limit: int | None = None):
    """A prepared dataset of ``copies`` x the real VOC images that have masks (about 500x375 each), under new
    names, so timing runs see real image statistics (``limit``: only the first images).
    Needs ../shared/realdata (or RPC_REALDATA)."""
    from rpc.data.voc import prepare_voc

    src = REALDATA / "voc" / "VOCdevkit" / "VOC2012"
    if not (src / "SegmentationClass").is_dir():
        raise SystemExit(f"benchmark needs the real VOC samples at {src} (set RPC_REALDATA)")
    raw = folder / "raw"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (raw / d).mkdir(parents=True, exist_ok=True)
    names = []
    stems = sorted(p.stem for p in (src / "SegmentationClass").glob("*.png"))[:limit]
    for i in range(copies):
        for stem in stems:
            name = f"b{i:03d}_{stem}"
            shutil.copy(src / "JPEGImages" / f"{stem}.jpg", raw / "JPEGImages" / f"{name}.jpg")
            shutil.copy(src / "SegmentationClass" / f"{stem}.png", raw / "SegmentationClass" / f"{name}.png")
            names.append(name)
    (raw / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(names) + "\n")
    return prepare_voc(raw, folder / "prepared", splits=("train",))


def write_result(name: str, result: dict) -> Path:
    path = OUT / f"{name}.json"
    write_json_atomic(path, {"benchmark": name, "machine": machine(), **result})
    print(json.dumps(result, indent=2))
    print(f"-> {path}")
    return path
