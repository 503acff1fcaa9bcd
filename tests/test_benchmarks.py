"""The VOC wall-time projection from gpu.sh's results: the workflow's configuration per stage, the arithmetic;
benchmarks/README.md naming every script."""

import re
from pathlib import Path

import pytest

from benchmarks.cams import mode_key
from benchmarks.voc_projection import TRAIN_AUG, VAL, markdown, project

REPO = Path(__file__).resolve().parents[1]


def _inputs():
    # rates chosen so that each stage's minutes are round numbers
    machine = {"cuda": "a GPU"}
    train = {"depth": 50, "crop": 512, "batch_size": 16, "dataset": "voc", "machine": machine,
             "presets": {"rpc": {"none": {"images_per_s": 5 * TRAIN_AUG / 60 / 10},
                                 "bf16": {"images_per_s": 5 * TRAIN_AUG / 60 / 8}}}}  # fmt: skip
    # the maps' keys as benchmarks.cams names them when BN folding and the pyramid vary
    cams = {"depth": 50, "machine": machine, "modes": {
        mode_key("fp32", None, "on", "device"): {"images_per_s": TRAIN_AUG / 60 / 12},
        mode_key("bf16", None, "off", "device"): {"images_per_s": TRAIN_AUG / 60 / 9},
        mode_key("bf16", None, "on", "host"): {"images_per_s": TRAIN_AUG / 60 / 4},
        mode_key("bf16", None, "on", "device"): {"images_per_s": TRAIN_AUG / 60 / 5}}}  # fmt: skip
    crf = {"machine": machine,
           "pipeline_s_per_image": {"1 workers": 60 * 20 / TRAIN_AUG, "16 workers": 60 * 3 / TRAIN_AUG}}
    seg = {"amp": {"none": {"s_per_iteration": 60 * 20 / 20_000}, "bf16": {"s_per_iteration": 60 * 11 / 20_000}},
           "predict": {"s_per_image": 60 * 2 / VAL, "reload_s": 30, "crf_workers": 16},
           "machine": machine, "dataset": "voc"}  # fmt: skip
    return train, cams, crf, seg


def test_projection_takes_the_workflows_configuration_per_stage_and_names_the_fastest():
    p = project(*_inputs())
    got = [(s["configuration"], round(s["minutes"], 6), s["fastest"], round(s["fastest_minutes"], 6))
           for s in p["stages"]]  # fmt: skip
    assert got == [
        ("bf16", 8, "bf16", 8),
        ("bf16_channels_last, BN folded on, pyramid on the device", 5,
         "bf16_channels_last, BN folded on, pyramid on the host", 4),
        ("16 workers", 3, "16 workers", 3),
        ("fp32", 20, "bf16", 11),  # amp auto keeps DeepLab in fp32 on a GPU; bf16 measured faster is named
        ("fp32, CRF in 16 processes", 2, "fp32", 2),
    ]  # fmt: skip
    assert p["total_minutes"] == pytest.approx(38) and p["fastest_total_minutes"] == pytest.approx(28)
    assert p["bounding_stage"].startswith("DeepLabv2") and p["goal_met"] and p["measured_on"] == {"cuda": "a GPU"}
    table = markdown(p)
    assert "| **total, one method** | | | **38.0** | (28.0) |" in table and "Goal <= 45 minutes: met" in table


def test_projection_refuses_a_maps_result_without_the_workflows_configuration():
    train, cams, crf, seg = _inputs()
    cams["modes"] = {mode_key("bf16", "2"): {"images_per_s": 1.0}, mode_key("bf16", "4"): {"images_per_s": 2.0}}
    with pytest.raises(SystemExit, match="no entry 'bf16_channels_last, auto workers'"):
        project(train, cams, crf, seg)


def test_projection_refuses_results_from_different_machines():
    train, cams, crf, seg = _inputs()
    crf = {**crf, "machine": {"cuda": None}}  # e.g. a CPU run's crf.json left in benchmarks/out
    with pytest.raises(SystemExit, match="different or no GPUs"):
        project(train, cams, crf, seg)


def test_every_benchmark_script_has_its_line_in_the_readme():
    """benchmarks/README.md names each script as it is run (tools and one-off studies), and nothing that is gone."""
    root = REPO / "benchmarks"
    text = (root / "README.md").read_text()
    scripts = {f"benchmarks.{p.relative_to(root).with_suffix('').as_posix().replace('/', '.')}"
               for p in root.rglob("*.py") if p.name not in ("__init__.py", "common.py")
               and "out" not in p.relative_to(root).parts[:1]}  # fmt: skip  (benchmarks/out: the results, ignored)
    named = set(re.findall(r"python -m (benchmarks[\w.]+)", text))
    assert scripts == named, {"unnamed": scripts - named, "gone": named - scripts}
