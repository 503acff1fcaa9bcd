"""Do the dense CRF's position kernels fit the images? The same predictions or maps refined with the published
widths (``reference_size 0``: sxy as written) and with the widths scaled to the image's long side
(``reference_size 500``, rpc.models.dense_crf's rule), scored the same way.

    python -m benchmarks.studies.crf_widths deeplab --model M.pt --dataset TUNE --split val --name crf_widths_deeplab
    python -m benchmarks.studies.crf_widths pseudo --dataset D --split train --runs results/sel_today-s20 ... --name ...
        ->  benchmarks/out/<name>.json

``deeplab``: DeepLab predictions without CRF, and with each CRF variant (mIoU, 255 none). ``pseudo``: each run's
maps (``<run>/cams/shard_*``) through the pseudo-mask CRF with each variant, mIoU with 255 ignored (SIPE's
convention) and counted as background, mean over the runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from pathlib import Path

from benchmarks.common import write_result

VARIANTS = {"published": 0.0, "scaled": 500.0}  # reference_size


def deeplab(a) -> dict:
    from rpc.data.index import DatasetIndex
    from rpc.evaluation.masks import evaluate_mask_dir
    from rpc.models.dense_crf import SEGMENTATION_CRF
    from rpc.segmentation.predict import predict_segmentation

    index = DatasetIndex.load(a.dataset)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, ref in VARIANTS.items():
            params = dataclasses.replace(SEGMENTATION_CRF, reference_size=ref)
            pred, crf = Path(tmp) / f"{name}_pred", Path(tmp) / f"{name}_crf"
            predict_segmentation(a.model, index.root, a.split, pred, crf_dir=crf, crf_params=params)
            out["no_crf"] = round(100 * evaluate_mask_dir(index, a.split, pred)["miou"], 2)
            out[name] = round(100 * evaluate_mask_dir(index, a.split, crf)["miou"], 2)
    return {"model": str(a.model), "split": a.split, "miou": out}


def pseudo(a) -> dict:
    from rpc.crf.pseudo import make_pseudo_masks
    from rpc.data.index import DatasetIndex
    from rpc.evaluation.masks import evaluate_mask_dir
    from rpc.models.dense_crf import PSEUDO_MASK_CRF

    index = DatasetIndex.load(a.dataset)
    per_run: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in map(Path, a.runs):
            cams = sorted((run / "cams").glob("shard_*"))
            per_run[run.name] = {}
            for name, ref in VARIANTS.items():
                out = Path(tmp) / run.name / name
                make_pseudo_masks(index.root, a.split, cams, out, workers=a.workers, allow_extra_maps=True,
                                  params=dataclasses.replace(PSEUDO_MASK_CRF, reference_size=ref))  # fmt: skip
                per_run[run.name][name] = {
                    u: round(100 * evaluate_mask_dir(index, a.split, out, uncertain=u)["miou"], 2)
                    for u in ("ignore", "background")
                }
    mean = {name: {u: round(statistics.mean(r[name][u] for r in per_run.values()), 2) for u in ("ignore", "background")}
            for name in VARIANTS}  # fmt: skip
    return {"split": a.split, "runs": per_run, "mean": mean}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("deeplab", help="DeepLab predictions' CRF")
    d.add_argument("--model", required=True)
    d.add_argument("--dataset", required=True)
    d.add_argument("--split", default="val")
    s = sub.add_parser("pseudo", help="the pseudo masks' CRF")
    s.add_argument("--dataset", required=True)
    s.add_argument("--split", default="train")
    s.add_argument("--runs", nargs="+", required=True, help="run folders holding cams/shard_*")
    s.add_argument("--workers", type=int, default=1)
    for q in (d, s):
        q.add_argument("--name", required=True)
    a = p.parse_args(argv)
    result = deeplab(a) if a.what == "deeplab" else pseudo(a)
    write_result(a.name, result)
    return result


if __name__ == "__main__":
    main()
