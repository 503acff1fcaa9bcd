"""The VOC wall-time projection from gpu.sh's results: the workflow's configuration per stage, the arithmetic."""

import pytest

from benchmarks.voc_projection import TRAIN_AUG, VAL, markdown, project


def _inputs():
    # rates chosen so that each stage's minutes are round numbers
    train = {"depth": 50, "crop": 512, "batch_size": 16,
             "presets": {"rpc": {"none": {"images_per_s": 5 * TRAIN_AUG / 60 / 10},
                                 "bf16": {"images_per_s": 5 * TRAIN_AUG / 60 / 8}}}}  # fmt: skip
    cams = {"depth": 50, "modes": {
        "fp32, BN folded True, pyramid on the device": {"images_per_s": TRAIN_AUG / 60 / 12},
        "bf16_channels_last, BN folded False, pyramid on the device": {"images_per_s": TRAIN_AUG / 60 / 9},
        "bf16_channels_last, BN folded True, pyramid on the host": {"images_per_s": TRAIN_AUG / 60 / 4},
        "bf16_channels_last, BN folded True, pyramid on the device": {"images_per_s": TRAIN_AUG / 60 / 5}}}  # fmt: skip
    crf = {"pipeline_s_per_image": {"1 workers": 60 * 20 / TRAIN_AUG, "16 workers": 60 * 3 / TRAIN_AUG}}
    seg = {"amp": {"none": {"s_per_iteration": 60 * 20 / 20_000}, "bf16": {"s_per_iteration": 60 * 11 / 20_000}},
           "predict": {"s_per_image": 60 * 1.5 / VAL, "start_up_s": 30}, "machine": {"cuda": "a GPU"}}  # fmt: skip
    return train, cams, crf, seg


def test_projection_takes_the_workflows_configuration_per_stage_and_names_the_fastest():
    p = project(*_inputs())
    got = [(s["configuration"], round(s["minutes"], 6), s["fastest"], round(s["fastest_minutes"], 6))
           for s in p["stages"]]  # fmt: skip
    assert got == [
        ("bf16", 8, "bf16", 8),
        ("bf16_channels_last, BN folded True, pyramid on the device", 5,
         "bf16_channels_last, BN folded True, pyramid on the host", 4),
        ("16 workers", 3, "16 workers", 3),
        ("fp32", 20, "bf16", 11),  # amp auto keeps DeepLab in fp32 on a GPU; bf16 measured faster is named
        ("fp32", 2, "fp32", 2),  # 1.5 minutes of images + 30 s start-up
    ]  # fmt: skip
    assert p["total_minutes"] == pytest.approx(38) and p["fastest_total_minutes"] == pytest.approx(28)
    assert p["bounding_stage"].startswith("DeepLabv2") and p["goal_met"] and p["measured_on"] == {"cuda": "a GPU"}
    table = markdown(p)
    assert "| **total, one method** | | | **38.0** | (28.0) |" in table and "Goal <= 45 minutes: met" in table


def test_projection_refuses_a_maps_result_without_the_workflows_configuration():
    train, cams, crf, seg = _inputs()
    cams["modes"] = {"bf16_channels_last, 2 workers": {"images_per_s": 1.0},
                     "bf16_channels_last, 4 workers": {"images_per_s": 2.0}}  # fmt: skip
    with pytest.raises(SystemExit, match="no single entry"):
        project(train, cams, crf, seg)
