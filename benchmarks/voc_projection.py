"""The full VOC pipeline's wall time for one method on one GPU machine, projected from the stage rates that
``benchmarks/gpu.sh`` measures (its JSON in ``benchmarks/out/``, or ``--dir``):

    python -m benchmarks.voc_projection [--dir benchmarks/out] [--method rpc]
        ->  benchmarks/out/voc_projection.json, and the table as markdown on stdout

One method's stages run one after the other on the one GPU, as the workflow's DAG orders them: the classifier
(the paper's 5 epochs of ``train_aug``), RS-CAMs of ``train_aug`` (4 scales + flip), the CRF pseudo masks of
``train_aug`` on the host's CPU cores, DeepLabv2 R101 (20k iterations) and its predictions on ``val``. Each stage
is projected in the configuration the workflow runs on a GPU (``amp: auto``: bf16 for the classifier and the
maps, fp32 for DeepLab; BN folded; the pyramid on the device; the CRF with the most workers measured; the
predictions' CRF in the processes measured: the VOC config gives it every core); the fastest measured
alternative is named beside it. Not included: the jobs' start-ups, the small stages (evaluation, summaries),
waiting for a cluster's queue.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.cams import mode_key
from benchmarks.common import OUT, write_result

TRAIN_AUG, VAL = 10_582, 1_449  # VOC 2012 images: SBD-augmented training set, validation set
EPOCHS = 5  # the paper's classifier schedule
SEGMENTATION = "segmentation_deeplabv2_r101-d8_1xb10-20k_voc12aug-321x321"
GOAL_MIN = 45


def _read(folder: Path, name: str) -> dict:
    path = folder / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"{path}: missing; run benchmarks/gpu.sh first (it writes every input of the projection)")
    return json.loads(path.read_text())


def _maps_choice(modes: dict) -> str:
    """The key of ``benchmarks.cams``' entry the workflow's defaults run on a GPU (bf16, BN folded, the pyramid
    on the device, the loaders' ``auto`` count), among the options the run varied."""
    workflow = {" workers": "auto", "BN folded": "on", "pyramid on the": "device"}  # option marker -> default
    key = mode_key("bf16", *(value if any(marker in k for k in modes) else None for marker, value in workflow.items()))
    if key not in modes:
        raise SystemExit(f"cams: no entry {key!r} (the workflow's configuration on a GPU) among {list(modes)}")
    return key


def project(train: dict, cams: dict, crf: dict, seg: dict, method: str = "rpc", iterations: int = 20_000) -> dict:
    """``{"stages": [{stage, configuration, rate, minutes, fastest, fastest_minutes}], "total_minutes",
    "bounding_stage", ...}`` from the four benchmarks' results (their JSON as dicts), which must come from one
    GPU model and the VOC images."""
    gpus = {(r.get("machine") or {}).get("cuda") for r in (train, cams, crf, seg)}
    if len(gpus) != 1 or None in gpus:
        raise SystemExit(f"the four results come from different or no GPUs ({gpus}): rerun benchmarks/gpu.sh")
    if train.get("dataset") != "voc" or seg.get("dataset") != "voc":
        raise SystemExit("the classifier and DeepLab results must be measured on the VOC images (--dataset voc)")
    stages = []

    def add(stage: str, config: str, rate: str, minutes: float, alternatives: dict[str, float]) -> None:
        best = min(alternatives, key=alternatives.get)
        stages.append({"stage": stage, "configuration": config, "rate": rate, "minutes": minutes,
                       "fastest": best, "fastest_minutes": alternatives[best]})  # fmt: skip

    modes = train["presets"][method]
    minutes = {m: EPOCHS * TRAIN_AUG / v["images_per_s"] / 60 for m, v in modes.items()}
    add(f"classifier ({method}, R{train['depth']}, crop {train['crop']}, batch {train['batch_size']}, "
        f"{EPOCHS} epochs of {TRAIN_AUG:,})", "bf16", f"{modes['bf16']['images_per_s']:.0f} img/s",
        minutes["bf16"], minutes)  # fmt: skip
    key = _maps_choice(cams["modes"])
    minutes = {k: TRAIN_AUG / v["images_per_s"] / 60 for k, v in cams["modes"].items()}
    add(f"RS-CAMs (R{cams['depth']} RPC, 4 scales + flip, {TRAIN_AUG:,} images)", key,
        f"{cams['modes'][key]['images_per_s']:.1f} img/s", minutes[key], minutes)  # fmt: skip
    per_image = crf["pipeline_s_per_image"]
    most = max(per_image, key=lambda k: int(k.split()[0]))
    minutes = {k: TRAIN_AUG * v / 60 for k, v in per_image.items()}
    add(f"CRF pseudo masks ({TRAIN_AUG:,} images)", most, f"{1 / per_image[most]:.1f} img/s", minutes[most], minutes)
    amps = seg["amp"]
    minutes = {("fp32" if k == "none" else k): iterations * v["s_per_iteration"] / 60 for k, v in amps.items()}
    add(f"DeepLabv2 R101 ({iterations:,} iterations)", "fp32", f"{amps['none']['s_per_iteration']:.3f} s/it",
        minutes["fp32"], minutes)  # fmt: skip
    pred = seg["predict"]
    minutes = VAL * pred["s_per_image"] / 60
    add(f"predictions + CRF on val ({VAL:,} images, one scale)", f"fp32, CRF in {pred.get('crf_workers', 1)} processes",
        f"{1 / pred['s_per_image']:.1f} img/s", minutes, {"fp32": minutes})  # fmt: skip
    total = sum(s["minutes"] for s in stages)
    fastest = sum(s["fastest_minutes"] for s in stages)
    bound = max(stages, key=lambda s: s["minutes"])
    return {"method": method, "stages": stages, "total_minutes": total, "fastest_total_minutes": fastest,
            "bounding_stage": bound["stage"], "goal_minutes": GOAL_MIN, "goal_met": total <= GOAL_MIN,
            "measured_on": seg.get("machine")}  # fmt: skip


def markdown(p: dict) -> str:
    rows = ["| stage | as the workflow runs it | measured rate | minutes | fastest measured (minutes) |",
            "|---|---|---:|---:|---|"]  # fmt: skip
    for s in p["stages"]:
        rows.append(f"| {s['stage']} | {s['configuration']} | {s['rate']} | {s['minutes']:.1f} | "
                    f"{s['fastest']} ({s['fastest_minutes']:.1f}) |")  # fmt: skip
    rows.append(f"| **total, one method** | | | **{p['total_minutes']:.1f}** | ({p['fastest_total_minutes']:.1f}) |")
    verdict = "met" if p["goal_met"] else "not met"
    rows.append(f"\nBounded by: {p['bounding_stage']}. Goal <= {p['goal_minutes']} minutes: {verdict}.")
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=OUT, help="folder of gpu.sh's JSON results")
    ap.add_argument("--method", default="rpc", choices=["cam", "sipe", "rpc"])
    ap.add_argument("--iterations", type=int, default=20_000, help="DeepLab's schedule (the VOC config's)")
    a = ap.parse_args(argv)
    inputs = [_read(a.dir, n) for n in ("train_r50", "cams_r50", "crf", SEGMENTATION)]
    result = project(*inputs, method=a.method, iterations=a.iterations)
    write_result("voc_projection", result)
    print(markdown(result))


if __name__ == "__main__":
    main()
