"""How the per-image cost of the maps (RPC, 4 scales + flip) and of the pseudo-mask CRF grows with the image side
and with the number of classes present, on this machine; a plot beside the JSON.

    python -m benchmarks.studies.scaling [--sizes 128 192 256 384 512] [--classes 1 2 4 8] [--depth 18]
        ->  benchmarks/out/scaling.json, benchmarks/out/scaling.png

Images and maps are smooth random fields (the CRF's permutohedral lattice grows with the number of distinct
colours, so white noise would overstate its cost; the network's cost does not depend on content); the model is
the RPC preset with random
weights at the given depth (the demo's 18 by default; the paper's 50 with --depth 50); each point is the median
of ``--repeats`` runs after a warm-up. The class sweep runs at the middle size.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.common import OUT, default_amp, median_time, write_result
from rpc.crf.pseudo import confident_labels
from rpc.data.transforms import multiscale_flip
from rpc.models.rpc import RPCModel, make_config
from rpc.utils.device import cpu_identity

NUM_CLASSES = 20


def smooth_field(shape: tuple[int, ...], size: int, seed: int) -> np.ndarray:
    """``(*shape, size, size)`` values in [0, 1]: random at 1/16 of the size, upsampled bilinearly."""
    low = torch.from_numpy(np.random.default_rng(seed).random((1, int(np.prod(shape)), max(2, size // 16),
                                                               max(2, size // 16)), dtype=np.float32))  # fmt: skip
    up = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return up.reshape(*shape, size, size).numpy()


def map_seconds(model, size: int, present: int, bf16: bool, repeats: int) -> float:
    image = (smooth_field((3,), size, 0).transpose(1, 2, 0) * 255).astype(np.uint8)
    labels = torch.zeros(1, NUM_CLASSES)
    labels[0, :present] = 1
    pairs = [torch.from_numpy(x) for x in multiscale_flip(image, (1.0, 0.5, 1.5, 2.0))]
    fmt = torch.channels_last if bf16 else torch.contiguous_format

    @torch.inference_mode()
    def run():
        for x in pairs:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                model.maps(x.contiguous(memory_format=fmt), labels)

    return median_time(run, repeats, warmup=2)[0]


def crf_seconds(size: int, present: int, repeats: int) -> float:
    image = (smooth_field((3,), size, 0).transpose(1, 2, 0) * 255).astype(np.uint8)
    keys = np.arange(present + 1)
    cams = smooth_field((present + 1,), size, 1)
    return median_time(lambda: confident_labels(image, keys, cams), repeats, warmup=2)[0]


def plot(result: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    sizes = [p["size"] for p in result["by_size"]]
    for key, label in (("maps_s", "maps (4 scales + flip)"), ("crf_s", "pseudo-mask CRF (2 passes)")):
        axes[0].plot(sizes, [p[key] for p in result["by_size"]], "o-", label=label)
        axes[1].plot([p["classes"] for p in result["by_classes"]], [p[key] for p in result["by_classes"]], "o-",
                     label=label)  # fmt: skip
    axes[0].set(xlabel="image side (px)", ylabel="seconds per image", title=f"{result['present']} classes present")
    axes[1].set(xlabel="classes present", ylabel="seconds per image", title=f"{result['class_size']} px")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    flags = ", ".join(result["machine_flags"]) or "no bf16 flags"
    fig.suptitle(f"ResNet-{result['depth']} RPC, {'bf16' if result['bf16'] else 'fp32'}, "
                 f"{torch.get_num_threads()} threads ({flags})", fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 192, 256, 384, 512])
    ap.add_argument("--classes", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--present", type=int, default=2, help="classes present in the size sweep")
    ap.add_argument("--depth", type=int, default=18)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--amp", choices=["bf16", "none"], default=default_amp())
    a = ap.parse_args(argv)
    bf16 = a.amp == "bf16"
    torch.manual_seed(0)
    model = RPCModel(make_config("rpc", depth=a.depth, num_classes=NUM_CLASSES, weights="none")).eval()
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    by_size, by_classes = [], []
    for size in a.sizes:
        point = {"size": size, "maps_s": map_seconds(model, size, a.present, bf16, a.repeats),
                 "crf_s": crf_seconds(size, a.present, a.repeats)}  # fmt: skip
        by_size.append(point)
        print(point, flush=True)
    class_size = a.sizes[len(a.sizes) // 2]
    for k in a.classes:
        point = {"classes": k, "maps_s": map_seconds(model, class_size, k, bf16, a.repeats),
                 "crf_s": crf_seconds(class_size, k, a.repeats)}  # fmt: skip
        by_classes.append(point)
        print(point, flush=True)
    result = {"depth": a.depth, "bf16": bf16, "present": a.present, "class_size": class_size, "by_size": by_size,
              "by_classes": by_classes, "machine_flags": cpu_identity()["flags"]}  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    plot(result, OUT / "scaling.png")
    write_result("scaling", {k: v for k, v in result.items() if k != "machine_flags"})


if __name__ == "__main__":
    main()
