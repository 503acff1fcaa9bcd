"""The scale rehearsal: config/voc.yaml and config/coco.yaml run through Snakemake on CPU on VOC- and COCO-shaped
folders of their real image sizes, class counts and labels per image, with a cheap model; per stage it records the
seconds per image per core, bytes per image on disk, peak memory per job and the job count, and projects them to
full VOC (10,582 ``train_aug`` + 1,449 ``val``) and full COCO (82,081 + 40,137) on one GPU + 16 cores and on a
4-GPU node with 64 cores, and each stage's longest job under profiles/slurm against the limit that a full-size
dry run of the workflow asks for it (``rpc.utils.job_time``).

    python -m benchmarks.rehearsal [--kinds voc coco] [--voc-images 1058] [--coco-images 2000] [--cores N]
                                   [--coco-val-share 0.1] [--dir benchmarks/out/rehearsal]
        ->  benchmarks/out/rehearsal/{voc,coco}/ (folders and runs), benchmarks/out/rehearsal.json,
            the table as markdown on stdout

What is measured is what does not depend on the model's size: the maps' bytes at full resolution, the pseudo
masks' CRF (both passes, the present classes), the scoring, the predictions' CRF (every class), the merges and
the preparation. The model stages (classifier, maps, DeepLab, its forwards) run a ResNet-18 from random weights
on one scale, so their CPU seconds are not a GPU's: their projection takes the GPU rates of
``rpc.utils.job_time.GPU_S`` (measured on a GPU, docs/speed.md), marked as such.

The maps' bytes depend on their content, which a one-epoch model does not give; benchmarks.map_format measures
them on trained maps of genuine VOC files. The images: each present class a filled ellipse polygon of its own
colour over a noisy background. VOC: the official ``train_aug`` / ``val`` ids and their labels as shipped in
rpc/resources/voc, sizes drawn from the 18 genuine JPEGs of ../shared/realdata; COCO: the sizes and category sets
of the 100 images of its ``instances_val2014_100.json``. Deterministic for a given count.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from benchmarks.common import OUT, REALDATA, REPO, write_result
from rpc.data.palette import write_mask
from rpc.data.voc import VOC_CLASSES, read_shipped_labels, shipped_voc_file
from rpc.utils import job_time
from rpc.utils.io import read_list, write_list, write_text_atomic

FULL = {  # images of the full datasets' splits: (training split, scored split of the maps, val)
    "voc": {"train": 10_582, "local_maps": 1_464, "val": 1_449},
    "coco": {"train": 82_081, "local_maps": 82_081, "val": 40_137},
}
CLASSES = {"voc": 21, "coco": 81}  # background included
NODES = {"1 GPU + 16 cores": (1, 16), "4 GPUs + 64 cores": (4, 64)}


# --------------------------------------------------------------------------------------------------- the folders
def _background(rng, h: int, w: int) -> np.ndarray:
    img = np.empty((h, w, 3), np.float32)
    img[:] = rng.uniform(70, 180, size=3)
    img += rng.normal(0, 20, size=(h, w, 3))
    return img


def _ellipse_polygon(rng, h: int, w: int, points: int = 16) -> np.ndarray:
    """``(points, 2)`` float x, y of an ellipse covering about 5-30 % of the image, inside it."""
    ax, ay = rng.uniform(0.15, 0.35) * w, rng.uniform(0.15, 0.35) * h
    cx, cy = rng.uniform(ax, w - ax), rng.uniform(ay, h - ay)
    t = np.linspace(0, 2 * np.pi, points, endpoint=False) + rng.uniform(0, np.pi)
    return np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t)], axis=1).clip(0, [w - 1, h - 1])


def _fill(polygon: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import ImageDraw

    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in polygon.round(1)], fill=1)
    return np.asarray(canvas, bool)


def _paint(rng, h: int, w: int, classes: list[int], num_classes: int):
    """``(image (H, W, 3) uint8, mask (H, W) uint8, [(class, polygon)])``: one filled polygon per present class,
    in a colour of its own; a later class covers an earlier one (each keeps at least some pixels)."""
    img, mask, objects = _background(rng, h, w), np.zeros((h, w), np.uint8), []
    hues = np.linspace(0, 1, num_classes, endpoint=False)
    for c in classes:
        polygon = _ellipse_polygon(rng, h, w)
        inside = _fill(polygon, h, w)
        colour = 255 * np.array([abs(np.sin(np.pi * (hues[c - 1] + k / 3))) for k in range(3)])
        img[inside] = colour + rng.normal(0, 8, size=(int(inside.sum()), 3))
        mask[inside] = c
        objects.append((c, polygon))
    return np.clip(img, 0, 255).astype(np.uint8), mask, objects


def _voc_sizes() -> list[tuple[int, int]]:
    folder = REALDATA / "voc" / "VOCdevkit" / "VOC2012" / "JPEGImages"
    sizes = []
    for path in sorted(folder.glob("*.jpg")):
        with Image.open(path) as img:
            sizes.append((img.height, img.width))
    if not sizes:
        raise SystemExit(f"{folder}: no genuine VOC JPEGs to take the image sizes from (RPC_REALDATA)")
    return sizes


def _every(names: list[str], count: int) -> list[str]:
    """``count`` names spread evenly over ``names`` (in their order)."""
    step = len(names) / count
    return [names[int(i * step)] for i in range(count)]


def make_voc(root: Path, images: int) -> Path:
    """A VOCdevkit/VOC2012 folder of ``images`` ``train_aug`` ids (official ids, official labels), ``train`` =
    those in the official ``train``, and ``val`` = the same fraction of the official ``val``; XMLs and
    SegmentationClassAug masks for every image. Returns the VOC2012 folder."""
    voc = root / "VOCdevkit" / "VOC2012"
    official = {s: read_list(shipped_voc_file(f"{s}.txt")) for s in ("train_aug", "train", "val")}
    train_aug = _every(official["train_aug"], images)
    in_train = set(official["train"])
    splits = {
        "train_aug": train_aug,
        "train": [n for n in train_aug if n in in_train],
        "val": _every(official["val"], max(1, round(images * len(official["val"]) / len(official["train_aug"])))),
    }
    done = voc / "ImageSets" / "Segmentation" / "val.txt"
    if done.is_file() and (voc / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split() == train_aug:
        return voc  # written last: the folder is complete
    labels, sizes = read_shipped_labels(VOC_CLASSES), _voc_sizes()
    for i, name in enumerate(dict.fromkeys(splits["train_aug"] + splits["val"])):
        rng = np.random.default_rng([0, i])
        h, w = sizes[int(rng.integers(len(sizes)))]
        image, mask, objects = _paint(rng, h, w, labels[name], 20)
        (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(voc / "JPEGImages" / f"{name}.jpg", quality=90)
        write_mask(voc / "SegmentationClassAug" / f"{name}.png", mask)
        objs = "".join(f"<object><name>{VOC_CLASSES[c]}</name></object>" for c, _ in objects)
        write_text_atomic(
            voc / "Annotations" / f"{name}.xml",
            f"<annotation><filename>{name}.jpg</filename><size><width>{w}</width><height>{h}</height>"
            f"</size>{objs}</annotation>\n",
        )
    for split in ("train_aug", "train", "val"):
        write_list(voc / "ImageSets" / "Segmentation" / f"{split}.txt", splits[split])
    return voc


def make_coco(root: Path, images: int, val_share: float = 0.1) -> Path:
    """A COCO folder (annotations/instances_{train,val}2014.json, train2014/, val2014/) of ``images`` images,
    ``val_share`` of them in val2014 (COCO's own: 0.33; the predictions' 81-class CRF is the rehearsal's costliest
    step per image, and its rate does not depend on the count); sizes and category sets resampled from the 100
    genuine images of ``instances_val2014_100.json``, one polygon instance per present category. Returns the
    root."""
    source = json.loads((REALDATA / "coco" / "annotations" / "instances_val2014_100.json").read_text())
    categories = sorted(source["categories"], key=lambda c: c["id"])
    contiguous = {c["id"]: i + 1 for i, c in enumerate(categories)}
    official = {c: i for i, c in contiguous.items()}
    shapes = {im["id"]: (im["height"], im["width"]) for im in source["images"]}
    present: dict[int, set] = {}
    for ann in source["annotations"]:
        present.setdefault(ann["image_id"], set()).add(contiguous[ann["category_id"]])
    pool = [(shapes[i], sorted(present[i])) for i in sorted(present)]
    val = max(1, round(images * val_share))
    counts = {"train2014": images - val, "val2014": val}
    if all((root / "annotations" / f"instances_{s}.json").is_file() for s in counts):
        return root  # each instances file is written after its images
    ann_id = 0
    for s, (split, count) in enumerate(counts.items()):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        images_json, anns = [], []
        for i in range(count):
            rng = np.random.default_rng([1, s, i])
            (h, w), classes = pool[int(rng.integers(len(pool)))]
            image, mask, objects = _paint(rng, h, w, classes, 80)
            img_id = s * 1_000_000 + i + 1
            name = f"COCO_{split}_{img_id:012d}.jpg"
            Image.fromarray(image).save(folder / name, quality=90)
            images_json.append({"id": img_id, "file_name": name, "height": h, "width": w})
            for c, polygon in objects:
                visible = int((mask == c).sum())
                x0, y0 = polygon.min(axis=0)
                x1, y1 = polygon.max(axis=0)
                ann_id += 1
                anns.append(
                    {
                        "id": ann_id,
                        "image_id": img_id,
                        "category_id": official[c],
                        "iscrowd": 0,
                        "area": float(visible),
                        "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                        "segmentation": [polygon.round(1).ravel().tolist()],
                    }
                )
        write_text_atomic(
            root / "annotations" / f"instances_{split}.json",
            json.dumps({"images": images_json, "annotations": anns, "categories": categories}),
        )
    return root


# ------------------------------------------------------------------------------------------------------- the run
def overlay(kind: str, root: Path, cores: int) -> dict:
    """What the rehearsal changes in config/<kind>.yaml: the folder, one experiment (rpc), a ResNet-18 from random
    weights trained one short epoch, maps on one scale, a DeepLab of a few iterations; the rest (shards, the CRF,
    the scoring, predictions with their CRF) as the real config runs it."""
    return {
        "dataset": {"kind": kind, "root": str(root)},
        "experiments": {"rpc": {"preset": "rpc"}},
        "model": {"depth": 18, "weights": "none"},
        "train": {"epochs": 1, "batch_size": 8, "crop": 192, "num_workers": 1},
        "cams": {"scales": [1.0], "batch_size": 4},
        "segmentation": {
            "config": "config/mmseg/deeplabv2_r18-d8_1xb8-5ep_synthetic-128x128.py",
            "options": [
                "train_cfg.max_iters=20",
                "param_scheduler.0.end=20",
                "train_dataloader.num_workers=0",
                "train_dataloader.persistent_workers=False",
            ],
            "upper_bound": False,
        },
        "cpu_threads": {"train": cores, "cams": cores, "segmentation": cores, "predict": cores},
        "figures": {"count": 2},
    }


def _env() -> dict[str, str]:
    """The jobs' python first on PATH."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def run_workflow(kind: str, folder: Path, root: Path, cores: int) -> float:
    """Snakemake on the real config plus the overlay, every output kept (``--notemp``: the shards' bytes are
    measured); returns the wall seconds. A finished run is not rerun."""
    run = folder / "run"
    run.mkdir(parents=True, exist_ok=True)
    (run / "overlay.yaml").write_text(yaml.safe_dump(overlay(kind, root, cores), sort_keys=False))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--cores",
        str(cores),
        "--notemp",
        "--configfile",
        str(REPO / "config" / f"{kind}.yaml"),
        str(run / "overlay.yaml"),
        "--",
        "results/rpc-s15/summary.md",
    ]  # the one experiment (the config's others are not run)
    start = time.perf_counter()
    with open(run / "snakemake.log", "a") as log:
        subprocess.run(cmd, cwd=run, env=_env(), stdout=log, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------------------ the measurement
#: benchmark file stem (without the shard number) -> (stage, the split whose images it processes)
STAGES = {
    "prepare": ("prepare", "all"),
    "train_classifier": ("classifier", "train"),
    "rs_cams": ("maps", "train"),
    "pseudo_masks": ("pseudo_masks", "train"),
    "merge_pseudo_masks": ("merge_pseudo_masks", "train"),
    "eval_cams": ("eval_cams", "local_maps"),
    "eval_pseudo_masks": ("eval_pseudo_masks", "local_maps"),
    "train_segmentation": ("deeplab", "train"),
    "predict_segmentation": ("predict", "val"),
    "crf_predictions": ("crf_predictions", "val"),
    "merge_predictions": ("merge_predictions", "val"),
    "eval_segmentation": ("eval_segmentation", "val"),
}
RULES = {"prepare": "prepare_dataset", "classifier": "train_classifier", "maps": "rs_cams",
         "pseudo_masks": "pseudo_masks_shard", "merge_pseudo_masks": "merge_pseudo_masks", "eval_cams": "eval_cams",
         "eval_pseudo_masks": "eval_pseudo_masks", "deeplab": "train_segmentation", "predict": "predict_segmentation",
         "crf_predictions": "crf_predictions", "merge_predictions": "merge_predictions",
         "eval_segmentation": "eval_segmentation"}  # fmt: skip
GPU_STAGES = {"classifier", "maps", "deeplab", "predict"}


def _stem(benchmark: str) -> str:
    stem = Path(benchmark).name.removesuffix(".benchmark.tsv")
    head, _, tail = stem.rpartition("_")
    return head if tail.isdigit() else stem


def job_blocks(text: str) -> list[dict]:
    """The jobs of a Snakemake log or dry run: rule, benchmark file, threads and resources of each."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
        field = fields.get
        resources = dict(kv.split("=", 1) for kv in (field("resources") or "").split(", ") if "=" in kv)
        jobs.append(
            {
                "rule": head[1],
                "benchmark": field("benchmark"),
                "threads": int(field("threads") or 1),
                "resources": resources,
            }
        )
    return jobs


def read_benchmarks(run: Path) -> dict[str, dict]:
    """Per stage: jobs, summed wall seconds, core-seconds (wall x the job's threads: what the job holds), the CPU
    seconds Snakemake sampled (a lower bound: the last seconds of a process between two samples are missed), the
    largest peak RSS and PSS (MB) of one job over its process tree (RSS counts the pages that forked workers share
    once per process; PSS divides them between the processes, so it is the job's real footprint)."""
    threads = {
        job["benchmark"]: job["threads"] for job in job_blocks((run / "snakemake.log").read_text()) if job["benchmark"]
    }
    stages: dict[str, dict] = {}
    for path in sorted((run / "logs").rglob("*.benchmark.tsv")):
        stem = _stem(path.name)
        if stem not in STAGES:
            continue
        row = list(csv.DictReader(path.open(), delimiter="\t"))[-1]  # a rerun appends: the last is the finished job
        stage, split = STAGES[stem]
        entry = stages.setdefault(
            stage,
            {"jobs": 0, "threads": 0, "wall_s": 0.0, "core_s": 0.0, "cpu_s": 0.0, "max_rss_mb": 0.0, "split": split},
        )
        n = threads.get(str(path.relative_to(run)), 1)
        entry["jobs"] += 1
        entry["threads"] = max(entry["threads"], n)
        entry["wall_s"] += float(row["s"])
        entry["core_s"] += float(row["s"]) * n
        entry["cpu_s"] += float(row.get("cpu_time") or 0.0)
        entry["max_rss_mb"] = max(entry["max_rss_mb"], float(row.get("max_rss") or 0.0))
        entry["max_pss_mb"] = max(entry.get("max_pss_mb", 0.0), float(row.get("max_pss") or 0.0))
    return stages


def jobs_span_s(run: Path) -> float:
    """Seconds from the first job's start to the last job's end (each benchmark file is written as its job ends):
    the run's wall time, also when a later call found nothing to do."""
    ends = [(p.stat().st_mtime, float(list(csv.DictReader(p.open(), delimiter="\t"))[-1]["s"]))
            for p in (run / "logs").rglob("*.benchmark.tsv")]  # fmt: skip
    return max(e for e, _ in ends) - min(e - s for e, s in ends) if ends else 0.0


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def disk(run: Path, experiment: str = "rpc-s15") -> dict[str, int]:
    """Bytes on disk of what scales with the images: the maps, the pseudo masks, the predictions' score files."""
    base = run / "results" / experiment
    scores = sum(_bytes(p) for p in (base / "segmentation" / "pred_shards").glob("shard_*/scores"))
    masks = sum(_bytes(p) for p in (base / "pseudo_masks").glob("shard_*"))
    return {"maps": _bytes(base / "cams"), "pseudo_masks": masks, "prediction_scores": scores}


def planned(kind: str, root: Path, folder: Path) -> dict[str, dict]:
    """Per rule, what a full-size run of config/<kind>.yaml asks under profiles/slurm's set-threads: a dry run in
    an empty folder, where no prepared split list exists yet, so the job limits count the standard splits."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    threads = [f"{rule}={n}" for rule, n in profile["set-threads"].items()]
    plan = folder / "full-size-plan"
    plan.mkdir(parents=True, exist_ok=True)
    config = {"dataset": {"kind": kind, "root": str(root)}}
    (plan / "overlay.yaml").write_text(yaml.safe_dump(config))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-n",
        "-s",
        str(REPO / "Snakefile"),
        "--cores",
        str(profile["cores"]),
        "--configfile",
        str(REPO / "config" / f"{kind}.yaml"),
        str(plan / "overlay.yaml"),
        "--set-threads",
        *threads,
        "--",
        "results/rpc-s15/summary.md",
    ]
    proc = subprocess.run(cmd, cwd=plan, env=_env(), capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"the full-size dry run failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    rules: dict[str, dict] = {}
    for job in job_blocks(proc.stdout):
        entry = rules.setdefault(
            job["rule"],
            {
                "jobs": 0,
                "threads": job["threads"],
                "runtime_min": int(job["resources"].get("runtime", 0)),
                "mem_mb": int(job["resources"].get("mem_mb", 0)),
            },
        )
        entry["jobs"] += 1
    return rules


# ------------------------------------------------------------------------------------------------- the projection
def gpu_work(stage: str, kind: str) -> float:
    """GPU-seconds of a full run's ``stage`` on one GPU (``job_time.GPU_S``, the real configs' schedules)."""
    full = FULL[kind]
    if stage == "classifier":
        return job_time.work_seconds("classifier", kind, full["train"], epochs=job_time.TRAIN_EPOCHS)
    if stage == "deeplab":
        return job_time.work_seconds("deeplab", kind, iterations=20_000 if kind == "voc" else 100_000)
    if stage == "maps":
        return job_time.work_seconds("maps", kind, full["train"])  # at GPU_S's 4 scales + flip
    return job_time.work_seconds("predict", kind, full["val"])


def project(kind: str, measured: dict, images: dict[str, int], plan: dict[str, dict], node: tuple[int, int]) -> dict:
    """Per stage of one run of full ``kind`` on ``node`` = (GPUs, cores): the work (GPU- or core-hours), the wall
    minutes on the node, and, under profiles/slurm (``plan``), the longest job's minutes beside its limit and its
    peak memory beside its request. GPU stages: ``job_time.GPU_S``; the classifier and DeepLab on every GPU of the
    node (torchrun), the shards one GPU each, side by side. CPU stages: the measured core-seconds per image; a
    stage's jobs side by side on the node's cores, each on its profile threads (the preparation on every core)."""
    gpus, cores = node
    full = FULL[kind]
    out = {}
    for stage, m in measured.items():
        rule = plan.get(RULES[stage], {"jobs": 1, "threads": 1, "runtime_min": 0, "mem_mb": 0})
        jobs, threads = rule["jobs"], rule["threads"]
        if stage in GPU_STAGES:
            work = gpu_work(stage, kind)
            if jobs == 1:
                wall, job_wall = work / gpus, work
            else:
                wall, job_wall = math.ceil(jobs / gpus) * work / jobs, work / jobs
            source = "GPU rate"
            peak_mb = None  # the rehearsal's ResNet-18 on CPU says nothing of a ResNet-50/101 job's memory
        else:
            n_full = full["train"] + full["val"] if m["split"] == "all" else full[m["split"]]
            work = m["core_s"] / max(1, images[m["split"]]) * n_full
            threads = cores if stage == "prepare" else threads
            wall = work / min(cores, jobs * threads)
            job_wall = work / jobs / threads
            source = "measured"
            # one process per thread beside the main one, each as large as those measured (PSS)
            peak_mb = m["max_pss_mb"] * (threads + 1) / (m["threads"] + 1) if threads > 1 else m["max_pss_mb"]
        out[stage] = {
            "jobs": jobs,
            "threads": threads,
            "work_h": work / 3600,
            "wall_min": wall / 60,
            "longest_job_min": job_wall / 60,
            "limit_min": rule["runtime_min"],
            "within_limit": job_wall / 60 <= rule["runtime_min"],
            "mem_mb": rule["mem_mb"],
            "peak_mb": peak_mb,
            "within_memory": peak_mb is None or peak_mb <= rule["mem_mb"],
            "source": source,
        }
    return out


def split_images(run: Path, kind: str) -> dict[str, int]:
    lists = run / "results" / "data" / "prepared" / "lists"
    if not lists.is_dir():
        raise SystemExit(f"{lists}: no prepared split lists: the run did not finish its preparation")
    names = {p.stem: p.read_text().split() for p in lists.glob("*.txt")}
    train, local, val = {"voc": ("train_aug", "train", "val"), "coco": ("train2014", "train2014", "val2014")}[kind]
    return {
        "train": len(names[train]),
        "local_maps": len(names[local]),
        "val": len(names[val]),
        "all": len(set().union(*names.values())),
    }


def rates_against_job_time(kind: str, measured: dict, images: dict[str, int]) -> dict:
    """The CRF stages' measured core-seconds per unit against the rates the job limits use (rpc.utils.job_time)."""
    area, keys = job_time.IMAGE_MP[kind], job_time.KEYS_PER_IMAGE[kind]
    out = {}
    if "pseudo_masks" in measured:
        rate = measured["pseudo_masks"]["core_s"] / images["train"] / (keys * area)
        out["pseudo_masks_s_per_key_mp"] = {"measured": rate, "job_time": job_time.PSEUDO_S_PER_KEY_MP}
    if "crf_predictions" in measured:
        rate = measured["crf_predictions"]["core_s"] / images["val"] / (CLASSES[kind] * area)
        out["crf_s_per_class_mp"] = {"measured": rate, "job_time": job_time.CRF_S_PER_CLASS_MP}
    return out



def summarise(kind: str, folder: Path, root: Path, wall_s: float) -> dict:
    run = folder / "run"
    images = split_images(run, kind)
    measured = read_benchmarks(run)
    for m in measured.values():
        m["images"] = images[m["split"]]
        m["core_s_per_image"] = m["core_s"] / max(1, m["images"])
    sizes = disk(run)
    per_image = {
        "maps": sizes["maps"] / images["train"],
        "pseudo_masks": sizes["pseudo_masks"] / images["train"],
        "prediction_scores": sizes["prediction_scores"] / images["val"],
    }
    full = FULL[kind]
    disk_full_gb = {
        k: v * (full["val"] if k == "prediction_scores" else full["train"]) / 1e9 for k, v in per_image.items()
    }
    plan = planned(kind, root, folder)
    return {
        "kind": kind,
        "images": images,
        "wall_s": jobs_span_s(run),
        "this_call_s": wall_s,
        "stages": measured,
        "bytes_per_image": per_image,
        "disk_full_gb": disk_full_gb,
        "rates": rates_against_job_time(kind, measured, images),
        "full_size_plan": plan,
        "projection": {name: project(kind, measured, images, plan, node) for name, node in NODES.items()},
    }


def markdown(result: dict) -> str:
    lines = []
    for kind, r in result["runs"].items():
        n = r["images"]
        lines += [
            f"### {kind.upper()}: {n['train']} training, {n['local_maps']} scored, {n['val']} val images",
            "",
            "| stage | measured: jobs, core-s / image, peak PSS MB / job | full: jobs x threads | "
            + " | ".join(f"{name}: wall min" for name in NODES)
            + " | SLURM: longest job min / limit"
            " | SLURM: peak MB / asked |",
            "|---|---|---|" + "---|" * len(NODES) + "---|---|",
        ]
        first_node = next(iter(NODES))
        for stage, m in r["stages"].items():
            p = {name: r["projection"][name][stage] for name in NODES}
            f = p[first_node]
            lines.append(
                f"| {stage}{' (GPU rate)' if f['source'] == 'GPU rate' else ''} | {m['jobs']}, "
                f"{m['core_s_per_image']:.3f}, {m['max_pss_mb']:.0f} | {f['jobs']} x {f['threads']} | "
                + " | ".join(f"{p[name]['wall_min']:.1f}" for name in NODES)
                + f" | {f['longest_job_min']:.1f} / {f['limit_min']}"
                + ("" if f["within_limit"] else " **over**")
                + f" | {'-' if f['peak_mb'] is None else round(f['peak_mb'])} / {f['mem_mb']}"
                + ("" if f["within_memory"] else " **over**")
                + " |"
            )
        b, d = r["bytes_per_image"], r["disk_full_gb"]
        lines += [
            "",
            "bytes per image: "
            + ", ".join(f"{k} {v / 1e3:.1f} kB" for k, v in b.items())
            + "; full run: "
            + ", ".join(f"{k} {v:.1f} GB" for k, v in d.items()),
            "rates (core-s per unit) measured / job_time: "
            + ", ".join(f"{k} {v['measured']:.3f} / {v['job_time']:.3f}" for k, v in r["rates"].items()),
            "",
        ]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", default=["voc", "coco"], choices=["voc", "coco"])
    parser.add_argument("--voc-images", type=int, default=1058, help="train_aug images (VOC: 10,582)")
    parser.add_argument("--coco-images", type=int, default=2000, help="train2014 + val2014 images")
    parser.add_argument("--coco-val-share", type=float, default=0.1, help="of them in val2014")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--dir", type=Path, default=OUT / "rehearsal")
    args = parser.parse_args(argv)
    runs = {}
    for kind in args.kinds:
        folder = args.dir / kind
        start = time.perf_counter()
        if kind == "voc":
            root = make_voc(folder / "data", args.voc_images)
        else:
            root = make_coco(folder / "data", args.coco_images, args.coco_val_share)
        print(f"{kind}: folder in {time.perf_counter() - start:.0f} s: {root}", flush=True)
        wall = run_workflow(kind, folder, root, args.cores)
        runs[kind] = summarise(kind, folder, root, wall)
    result = {"cores": args.cores, "runs": runs}
    write_result("rehearsal", result)
    print(markdown(result))


if __name__ == "__main__":
    main()
