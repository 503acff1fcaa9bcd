"""The experiment plan of a workflow config: which runs exist (experiment x seed, ablation cells, imported maps,
the ground-truth upper bound), each run's seed and classifier settings, and the checks that a plan is consistent.
Plain Python on the config mapping (no Snakemake), so that it is unit-tested (tests/test_plan.py); the workflow
(workflow/rules/common.smk) builds one :class:`Plan` and its rules read it.

Run names: ``<experiment>-s<seed>`` for classifiers and the upper bound (``ground_truth-s<seed>``), the configured
name for imported maps; each is a folder ``results/<run>/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

PRETRAINED = "results/pretrain/backbone.pth"  # the pretraining stage's output, for `weights: pretrained`
UPPER_BOUND = "ground_truth"  # the experiment name of DeepLab on the true masks
RESERVED = ("pretrain", "data")  # results/ folders that are not runs


class PlanError(ValueError):
    """The config's runs contradict each other (one line naming the run or cell)."""


def run_name(experiment: str, seed: int) -> str:
    """One run = one experiment trained with one seed."""
    return f"{experiment}-s{seed}"


def expand_seeds(entries: dict, default_seeds: list[int]) -> dict[str, dict]:
    """``{name: settings}`` -> ``{run name: settings with train.seed}``, one run per seed of the entry (its own
    ``seeds`` or ``default_seeds``)."""
    runs = {}
    for name, entry in entries.items():
        for seed in entry.get("seeds", default_seeds):
            settings = {k: v for k, v in entry.items() if k != "seeds"}
            settings["train"] = {**entry.get("train", {}), "seed": int(seed)}
            runs[run_name(name, seed)] = settings
    return runs


@dataclass(frozen=True)
class Plan:
    config: dict
    runs: dict[str, dict]  # the main experiments' runs: maps over the training split, DeepLab, the summary
    ablation_runs: dict[str, dict]  # the ablation cells' runs: maps over the scored split only
    imported: dict[str, dict]  # other methods' maps, each a run without a classifier
    upper_bound_runs: list[str]  # DeepLab on the ground truth, one per seed (none unless asked)

    @classmethod
    def from_config(cls, config: dict, ablations: dict, ablations_file: str = "ablations") -> Plan:
        """The plan of a validated workflow ``config`` and its ablation grid; a :class:`PlanError` names the first
        contradiction: a table naming an unknown cell, an imported run under a taken name, a pretrained backbone of
        another depth than a classifier's."""
        for table in ablations["tables"]:
            for row in table["rows"]:
                for cell in sorted(set(row["cells"]) - set(ablations["cells"])):
                    raise PlanError(f"{ablations_file}: table {table['title']!r} names the unknown cell {cell!r}")
        seeds = config["seeds"]
        runs = expand_seeds(config["experiments"], seeds)
        ablation_runs = expand_seeds(ablations["cells"], ablations.get("seeds", [15]))
        imported = dict(config.get("imported_maps") or {})
        for name in imported:
            if name in runs or name in ablation_runs or name.startswith(UPPER_BOUND) or name in RESERVED:
                raise PlanError(f"imported_maps: the run name {name!r} is taken (a classifier run or a results/ "
                                "folder)")
        upper = [run_name(UPPER_BOUND, s) for s in seeds] if config["segmentation"]["upper_bound"] else []
        plan = cls(config, runs, ablation_runs, imported, upper)
        plan._check_pretrained_depth()
        return plan

    @property
    def classifiers(self) -> dict[str, dict]:
        """Every run with a classifier; a main run wins over an ablation cell of the same name (it is reused)."""
        return {**self.ablation_runs, **self.runs}

    @property
    def map_runs(self) -> list[str]:
        """Every run with maps and pseudo masks that DeepLab trains on."""
        return list(self.runs) + list(self.imported)

    @property
    def segmentation_runs(self) -> list[str]:
        return list(self.runs) + self.upper_bound_runs + list(self.imported)

    def is_upper_bound(self, run: str) -> bool:
        return run in self.upper_bound_runs

    def seed(self, run: str) -> int:
        """A run's training seed: a classifier's, the upper bound's own; imported maps (DeepLab's own seed) take
        the first seed."""
        if run in self.classifiers:
            return self.classifiers[run]["train"]["seed"]
        seeds = self.config["seeds"]
        return seeds[self.upper_bound_runs.index(run)] if self.is_upper_bound(run) else seeds[0]

    def classifier_settings(self, run: str) -> tuple[str, str, str]:
        """``(preset, model overrides, train overrides)`` of a classifier run, the overrides as JSON (sorted keys):
        the config's ``model:`` / ``train:`` with the run's own on top, ``weights: pretrained`` as the file."""
        entry = self.classifiers[run]
        model = {**self.config.get("model", {}), **entry.get("model", {})}
        if model.get("weights") == "pretrained":
            model["weights"] = PRETRAINED
        train = {**self.config.get("train", {}), **entry.get("train", {})}
        return entry["preset"], json.dumps(model, sort_keys=True), json.dumps(train, sort_keys=True)

    def uses_pretrained(self) -> bool:
        """Whether a classifier or DeepLab starts from the pretraining stage's backbone."""
        weights = [self.config.get("model", {}).get("weights")]
        weights += [c.get("model", {}).get("weights") for c in self.classifiers.values()]
        return "pretrained" in weights or self.config["segmentation"].get("weights") == "pretrained"

    def _check_pretrained_depth(self) -> None:
        """The pretrained backbone fits only classifiers of its own depth."""
        if not self.uses_pretrained():
            return
        depth = self.config["pretrain"]["depth"]
        for name, entry in self.classifiers.items():
            model = {**self.config.get("model", {}), **entry.get("model", {})}
            if model.get("weights") == "pretrained" and model.get("depth", 50) != depth:
                raise PlanError(f"{name}: model.depth={model.get('depth', 50)} but the pretrained backbone is "
                                f"pretrain.depth={depth}; set them equal")  # fmt: skip
