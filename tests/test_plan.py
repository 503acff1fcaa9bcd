"""The experiment plan (rpc/utils/plan.py) on hand-made configs: which runs exist, their seeds and classifier
settings, and the contradictions it names."""

from __future__ import annotations

import json

import pytest

from rpc.utils.plan import PRETRAINED, Plan, PlanError, expand_seeds


def _config(**changes) -> dict:
    config = {"seeds": [15, 16], "experiments": {"rpc": {"preset": "rpc"}, "cam": {"preset": "cam", "seeds": [3]}},
              "model": {"depth": 18, "weights": "pretrained"}, "train": {"epochs": 6},
              "segmentation": {"upper_bound": True, "weights": "pretrained"}, "pretrain": {"depth": 18},
              "imported_maps": {}}  # fmt: skip
    config.update(changes)
    return config


GRID = {"seeds": [20], "cells": {"rpc": {"preset": "rpc"}, "one": {"preset": "rpc", "model": {"num_stages": 1}}},
        "tables": [{"title": "T", "rows": [{"label": "a", "cells": ["rpc", "one"]}]}]}  # fmt: skip


def test_runs_are_experiments_times_their_seeds():
    plan = Plan.from_config(_config(), GRID)
    assert list(plan.runs) == ["rpc-s15", "rpc-s16", "cam-s3"]  # an entry's own seeds win
    assert [plan.seed(r) for r in plan.runs] == [15, 16, 3]
    assert plan.upper_bound_runs == ["ground_truth-s15", "ground_truth-s16"]
    assert plan.seed("ground_truth-s16") == 16 and plan.is_upper_bound("ground_truth-s15")
    assert plan.segmentation_runs == ["rpc-s15", "rpc-s16", "cam-s3", "ground_truth-s15", "ground_truth-s16"]
    assert not Plan.from_config(_config(segmentation={"upper_bound": False}), GRID).upper_bound_runs


def test_ablation_cells_are_runs_and_a_main_run_of_the_same_name_wins():
    grid = {**GRID, "seeds": [15], "cells": {**GRID["cells"], "rpc": {"preset": "rpc", "model": {"depth": 50}}}}
    plan = Plan.from_config(_config(), grid)
    assert set(plan.ablation_runs) == {"rpc-s15", "one-s15"}
    assert plan.classifiers["rpc-s15"] == plan.runs["rpc-s15"]  # reused: the cell's own settings are not used
    assert "one-s15" not in plan.map_runs  # a cell's maps cover the scored split only: no DeepLab


def test_classifier_settings_merge_the_config_and_the_run():
    config = _config(experiments={"big": {"preset": "sipe", "model": {"depth": 18}, "train": {"lr": 0.1}}})
    preset, model, train = Plan.from_config(config, GRID).classifier_settings("big-s15")
    assert preset == "sipe"
    assert json.loads(model) == {"depth": 18, "weights": PRETRAINED}  # `pretrained` is the stage's file
    assert json.loads(train) == {"epochs": 6, "lr": 0.1, "seed": 15}


def test_imported_maps_are_runs_of_their_own_without_a_seed():
    plan = Plan.from_config(_config(imported_maps={"sipe_official": {"maps": "/m"}}), GRID)
    assert plan.map_runs[-1] == "sipe_official" and plan.segmentation_runs[-1] == "sipe_official"
    assert plan.seed("sipe_official") == 15  # the first seed, for DeepLab


@pytest.mark.parametrize("name", ["rpc-s15", "one-s20", "ground_truth_x", "data"])
def test_an_imported_run_under_a_taken_name_is_refused(name):
    with pytest.raises(PlanError, match=f"imported_maps: the run name '{name}' is taken"):
        Plan.from_config(_config(imported_maps={name: {"maps": "/m"}}), GRID)


def test_a_table_naming_an_unknown_cell_is_refused():
    grid = {**GRID, "tables": [{"title": "T4", "rows": [{"label": "a", "cells": ["rpc", "missing"]}]}]}
    with pytest.raises(PlanError, match="config/ablations.yaml: table 'T4' names the unknown cell 'missing'"):
        Plan.from_config(_config(), grid, "config/ablations.yaml")


def test_a_pretrained_backbone_of_another_depth_is_refused():
    config = _config(experiments={"deep": {"preset": "rpc", "model": {"depth": 50}}})
    with pytest.raises(PlanError, match="deep-s15: model.depth=50 but the pretrained backbone is pretrain.depth=18"):
        Plan.from_config(config, GRID)
    # without the pretrained backbone anywhere, any depth goes
    plain = _config(experiments={"deep": {"preset": "rpc", "model": {"depth": 50}}}, model={"weights": "none"},
                    segmentation={"upper_bound": False, "weights": "none"})  # fmt: skip
    assert not Plan.from_config(plain, GRID).uses_pretrained()


def test_expand_seeds_keeps_the_entry_and_sets_the_seed():
    runs = expand_seeds({"a": {"preset": "cam", "train": {"lr": 1}, "seeds": [1, 2]}}, [9])
    assert runs == {"a-s1": {"preset": "cam", "train": {"lr": 1, "seed": 1}},
                    "a-s2": {"preset": "cam", "train": {"lr": 1, "seed": 2}}}  # fmt: skip
