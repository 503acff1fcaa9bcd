"""Side by side, in one process: SIPE's own ``make_cam`` network (one ResNet-50) and this project's RS-CAMs
(ResNet-50 RPC: two ResNet-50 stages + SFA), on the same VOC images, 4 scales + flip, in fp32 and in bf16.

    git clone https://github.com/chenqi1126/SIPE /tmp/sipe      # the reference code, not part of this project
    python -m benchmarks.studies.sipe_make_cam --sipe /tmp/sipe [--images 4] [--repeats 2] [--modes fp32 bf16]
        ->  benchmarks/out/sipe_make_cam.json

SIPE's side runs its own ``network.resnet50_SIPE.CAM`` imported from the given checkout, one image at a time as its
``make_cam.py`` does (per scale one forward of the image and its flip, each scale's IS-CAM upsampled to the image
size, summed, max-normalised, the present classes saved with ``np.save``). Three things differ from running its
script, all needed to run it on a CPU here and none affecting its arithmetic: the ImageNet weights it would download
are replaced by a random initialisation of the same shapes (timing does not depend on the values), its two
``.cuda()`` calls return the tensor unchanged, and the multi-scale inputs come from this project's loader (the same
PIL bicubic rescaling and normalisation as its ``VOC12ClsDatasetMSF``), decoded before timing starts for both
sides alike. bf16 is ``torch.autocast`` around SIPE's forward, as a user would add it (its code has no bf16 path).

This project's side is ``rpc.cams.generate.make_rs_cams`` as the workflow runs it (BN folded, batches of equal-size
images; bf16 with channels-last), timed on the same images including its loader and its file writing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import median_time, voc_sized_dataset, write_result
from rpc.cams.generate import DEFAULT_SCALES, make_rs_cams
from rpc.data.datasets import MultiScaleInferenceSet
from rpc.models.checkpoint import save_model
from rpc.models.rpc import RPCModel, config_to_dict, make_config


def load_sipe_cam(sipe: Path, num_classes: int) -> torch.nn.Module:
    """SIPE's ``CAM`` network (``num_classes`` with background), randomly initialised, on the CPU."""
    if not (sipe / "network" / "resnet50_SIPE.py").is_file():
        raise SystemExit(f"{sipe} is not a checkout of chenqi1126/SIPE (no network/resnet50_SIPE.py)")
    sys.path.insert(0, str(sipe))
    import torchvision
    from network import resnet50 as sipe_resnet  # noqa: E402  (the checkout's module)

    # its ImageNet download, replaced by random weights of the same shapes
    sipe_resnet.model_zoo.load_url = lambda url, *a, **k: torchvision.models.resnet50().state_dict()
    torch.Tensor.cuda = lambda self, *a, **k: self  # its get_seed allocates with .cuda()
    from network.resnet50_SIPE import CAM  # noqa: E402

    model = CAM(num_cls=num_classes)
    model.eval()  # its train() override returns None: no chaining
    return model


@torch.no_grad()
def sipe_make_cam(model, items: list[dict], out: Path, bf16: bool) -> None:
    """SIPE's per-image loop of ``make_cam.py`` over pre-decoded items of ``MultiScaleInferenceSet``."""
    out.mkdir(parents=True, exist_ok=True)
    for item in items:
        label = F.pad(item["label"], (1, 0), "constant", 1.0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outputs = [model(x, label[:, None, None]) for x in item["scales"]]  # x: (2, 3, h, w)
        is_cams = [F.interpolate(o[1].float()[:, None], tuple(item["size"]), mode="bilinear", align_corners=False)
                   for o in outputs]  # fmt: skip
        cam = torch.stack(is_cams).sum(0)[:, 0]
        cam /= F.adaptive_max_pool2d(cam, (1, 1)) + 1e-5
        keys = torch.nonzero(label)[:, 0].numpy()
        np.save(out / f"{item['name']}.npy", {"keys": keys, "IS_CAM": cam.numpy()[keys]})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sipe", type=Path, required=True, help="a checkout of https://github.com/chenqi1126/SIPE")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--modes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rpc_bench_sipe_"))
    try:
        index = voc_sized_dataset(work, 1, limit=a.images)
        names = index.names("train")
        cfg = make_config("rpc", depth=50, weights="none", num_classes=index.num_classes - 1)
        torch.manual_seed(0)
        save_model(work / "model.pt", RPCModel(cfg).eval(), config_to_dict(cfg), list(index.classes), {})
        sipe = load_sipe_cam(a.sipe.resolve(), index.num_classes)
        items = list(MultiScaleInferenceSet(index, names, DEFAULT_SCALES))
        result = {"images": len(names), "scales": list(DEFAULT_SCALES), "repeats": a.repeats,
                  "threads": torch.get_num_threads(), "modes": {}}  # fmt: skip
        for mode in a.modes:
            bf16 = mode == "bf16"

            def ours(bf16=bf16):
                shutil.rmtree(work / "maps", ignore_errors=True)
                make_rs_cams(work / "model.pt", index.root, "train", work / "maps", amp="bf16" if bf16 else "none")

            def theirs(bf16=bf16):
                shutil.rmtree(work / "sipe", ignore_errors=True)
                sipe_make_cam(sipe, items, work / "sipe", bf16)

            t_ours, runs_ours = median_time(ours, a.repeats, warmup=1)
            t_sipe, runs_sipe = median_time(theirs, a.repeats, warmup=1)
            result["modes"][mode] = {
                "rpc_rs_cams_s_per_image": t_ours / len(names), "rpc_runs_s": runs_ours,
                "sipe_make_cam_s_per_image": t_sipe / len(names), "sipe_runs_s": runs_sipe,
                "rpc_over_sipe": t_ours / t_sipe,
            }  # fmt: skip
        write_result("sipe_make_cam", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
