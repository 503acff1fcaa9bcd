"""The scale rehearsal (benchmarks/rehearsal.py): its folders are what the preparation of VOC and COCO accepts, with
the genuine labels and sizes they claim, and its projection does the arithmetic it states."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from benchmarks import rehearsal
from benchmarks.common import REALDATA
from rpc.data.coco import prepare_coco
from rpc.data.voc import VOC_CLASSES, prepare_voc, read_shipped_labels
from rpc.utils import job_time

pytestmark = pytest.mark.skipif(not (REALDATA / "lists" / "voc" / "train_aug.txt").is_file(),
                                reason="needs ../shared/realdata")  # fmt: skip


def test_voc_folder_has_official_ids_labels_and_sizes(tmp_path):
    voc = rehearsal.make_voc(tmp_path, 40)
    index = prepare_voc(voc, tmp_path / "prepared", masks_for=("train", "val"), labels_from="xml")
    official = read_shipped_labels(VOC_CLASSES)
    lists = {s: (voc / "ImageSets" / "Segmentation" / f"{s}.txt").read_text().split() for s in ("train_aug", "val")}
    assert len(lists["train_aug"]) == 40 and len(lists["val"]) == round(40 * 1449 / 10582)
    assert set(lists["train_aug"]) <= set((REALDATA / "lists" / "voc" / "train_aug.txt").read_text().split())
    labels = dict(line.split("\t") for line in (tmp_path / "prepared" / "image_labels.tsv").read_text().splitlines()
                  if not line.startswith("#"))  # fmt: skip
    for name in lists["train_aug"] + lists["val"]:
        assert [int(c) for c in labels[name].split()] == official[name], name
    sizes = set(rehearsal._voc_sizes())
    for name in lists["train_aug"][:5]:
        with Image.open(voc / "JPEGImages" / f"{name}.jpg") as img:
            assert (img.height, img.width) in sizes
    assert index.num_classes == 21


def test_coco_folder_has_coco_categories_and_split_share(tmp_path):
    root = rehearsal.make_coco(tmp_path, 30, val_share=0.2)
    index = prepare_coco({s: root / "annotations" / f"instances_{s}.json" for s in ("train2014", "val2014")},
                         [root / "train2014", root / "val2014"], tmp_path / "prepared")  # fmt: skip
    assert index.num_classes == 81
    lists = {s: (tmp_path / "prepared" / "lists" / f"{s}.txt").read_text().split() for s in ("train2014", "val2014")}
    assert (len(lists["train2014"]), len(lists["val2014"])) == (24, 6)
    source = json.loads((REALDATA / "coco" / "annotations" / "instances_val2014_100.json").read_text())
    shapes = {(im["height"], im["width"]) for im in source["images"]}
    made = json.loads((root / "annotations" / "instances_train2014.json").read_text())
    assert {(im["height"], im["width"]) for im in made["images"]} <= shapes
    assert made["categories"] == sorted(source["categories"], key=lambda c: c["id"])


def _measured(core_s: float, split: str = "train", jobs: int = 2, threads: int = 2, rss: float = 900.0) -> dict:
    return {"jobs": jobs, "threads": threads, "wall_s": core_s / threads, "core_s": core_s, "cpu_s": core_s,
            "max_rss_mb": rss, "max_pss_mb": rss, "split": split}  # fmt: skip


def test_projection_spreads_cpu_work_over_the_node_and_checks_each_job():
    images = {"train": 100, "local_maps": 10, "val": 10, "all": 110}
    plan = {"pseudo_masks_shard": {"jobs": 8, "threads": 8, "runtime_min": 60, "mem_mb": 4000},
            "rs_cams": {"jobs": 8, "threads": 8, "runtime_min": 20, "mem_mb": 8000}}  # fmt: skip
    measured = {"pseudo_masks": _measured(core_s=100.0), "maps": _measured(core_s=999.0)}
    p = rehearsal.project("voc", measured, images, plan, (1, 16))
    crf = p["pseudo_masks"]
    work = 1.0 * 10_582  # 1 core-second per image, full train_aug
    assert crf["work_h"] == pytest.approx(work / 3600)
    assert crf["wall_min"] == pytest.approx(work / 16 / 60)  # 8 jobs x 8 threads on 16 cores
    assert crf["longest_job_min"] == pytest.approx(work / 8 / 8 / 60) and crf["within_limit"]
    assert crf["peak_mb"] == pytest.approx(900.0 * 9 / 3) and crf["within_memory"]
    assert rehearsal.project("voc", measured, images, plan, (4, 64))["pseudo_masks"]["wall_min"] == pytest.approx(
        work / 64 / 60
    )
    maps = p["maps"]  # a GPU stage: the GPU rate, not the rehearsal's CPU seconds
    gpu = job_time.work_seconds("maps", "voc", 10_582)
    assert maps["wall_min"] == pytest.approx(gpu / 60) and maps["longest_job_min"] == pytest.approx(gpu / 8 / 60)
    four = rehearsal.project("voc", measured, images, plan, (4, 64))["maps"]
    assert four["wall_min"] == pytest.approx(2 * gpu / 8 / 60)  # 8 shards on 4 GPUs: two rounds
    slow = rehearsal.project("voc", {"pseudo_masks": _measured(core_s=5000.0)}, images, plan, (1, 16))
    assert not slow["pseudo_masks"]["within_limit"]


def test_benchmark_blocks_are_read_per_rule(tmp_path):
    log = ("localrule pseudo_masks_shard:\n    input: a\n    benchmark: logs/r/pseudo_masks_3.benchmark.tsv\n"
           "    threads: 2\n    resources: tmpdir=/tmp, runtime=11, mem_mb=4000\n\n"
           "rule eval_cams:\n    benchmark: logs/r/eval_cams.benchmark.tsv\n    threads: 4\n")  # fmt: skip
    jobs = rehearsal.job_blocks(log)
    assert [(j["rule"], j["threads"]) for j in jobs] == [("pseudo_masks_shard", 2), ("eval_cams", 4)]
    assert jobs[0]["resources"]["runtime"] == "11" and rehearsal._stem(jobs[0]["benchmark"]) == "pseudo_masks"
    run = tmp_path
    (run / "snakemake.log").write_text(log)
    (run / "logs" / "r").mkdir(parents=True)
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (run / "logs" / "r" / "pseudo_masks_3.benchmark.tsv").write_text(
        header + "10.0\t0:00:10\t500\t0\t0\t0\t0\t0\t0\t15\n"
    )
    (run / "logs" / "r" / "eval_cams.benchmark.tsv").write_text(header + "4.0\t0:00:04\t300\t0\t0\t0\t0\t0\t0\t3\n")
    stages = rehearsal.read_benchmarks(Path(run))
    assert stages["pseudo_masks"]["core_s"] == 20.0 and stages["pseudo_masks"]["cpu_s"] == 15.0
    assert stages["eval_cams"]["core_s"] == 16.0 and stages["eval_cams"]["split"] == "local_maps"
