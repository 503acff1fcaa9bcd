# Helpers shared by the rules (only here): experiment lists, the dataset root check, per-rule config leaves.
import json
from pathlib import Path

import yaml

EXPERIMENTS = list(config["experiments"])
# Ablation cells (config/ablations.yaml) are classifiers like the experiments; a main experiment of the same
# name wins, so e.g. the `rpc` cell reuses results/rpc/.
ABLATIONS = yaml.safe_load(Path(config["ablations"]).read_text())
CLASSIFIERS = {**ABLATIONS["cells"], **config["experiments"]}
ABLATION_CELLS = list(ABLATIONS["cells"])
# DeepLab is also trained on the ground truth when asked (the upper bound); it has no maps or pseudo masks
SEG_EXPERIMENTS = EXPERIMENTS + (["ground_truth"] if config["segmentation"]["upper_bound"] else [])
SHARDS = list(range(config["cams"]["shards"]))
SPLITS = config["splits"]
DATASET = "results/data/prepared"
KIND = config["dataset"]["kind"]
MMSEG_BASES = sorted(str(p) for p in Path(config["segmentation"]["config"]).parent.glob("_base_/**/*.py"))


wildcard_constraints:
    experiment="[A-Za-z0-9_-]+",
    shard=r"\d+",


def dataset_root():
    """The configured dataset root, checked for the expected layout (a clear error instead of a late failure)."""
    root = config["dataset"].get("root")
    if KIND == "synthetic":
        return None
    if not root or str(root).lower() in ("null", "none"):  # `--config` passes null as text
        raise ValueError(f"dataset.root is required for dataset.kind={KIND} (set it in the config or with --config)")
    path = Path(root)
    if KIND == "voc":
        candidates = [path, path / "VOC2012", path / "VOCdevkit" / "VOC2012"]
        if not any((c / "JPEGImages").is_dir() for c in candidates):
            raise ValueError(f"dataset.root={root}: no JPEGImages/ found; expected VOCdevkit/VOC2012 (or a parent)")
    else:
        needed = ["annotations/instances_train2014.json", "annotations/instances_val2014.json", "train2014", "val2014"]
        missing = [n for n in needed if not (path / n).exists()]
        if missing:
            raise ValueError(f"dataset.root={root}: not a COCO 2014 folder, missing {', '.join(missing)}")
    return str(path)


def experiment_settings(experiment):
    """The config leaves the classifier uses: preset and merged model/train overrides, as JSON strings."""
    exp = CLASSIFIERS[experiment]
    model = {**config.get("model", {}), **exp.get("model", {})}
    train = {**config.get("train", {}), **exp.get("train", {})}
    return exp["preset"], json.dumps(model, sort_keys=True), json.dumps(train, sort_keys=True)


def overrides(section, settings_json):
    """`section.key=value` arguments for `python -m rpc train --set`."""
    return " ".join(f"'{section}.{k}={json.dumps(v)}'" for k, v in json.loads(settings_json).items())


def key_values(mapping):
    """`key=value` arguments (CRF parameters)."""
    return " ".join(f"{k}={v}" for k, v in sorted(mapping.items()))


def gpu_count(resources):
    return int(getattr(resources, "gpu", 0) or 0)


def python_launcher(wildcards, resources):
    """`python` on one device; `torchrun` over the job's GPUs when it has more than one."""
    gpus = gpu_count(resources)
    if gpus > 1:
        return f"torchrun --nproc-per-node {gpus} --rdzv-backend c10d --rdzv-endpoint localhost:0"
    return "python"


def initial_weights(wildcards):
    """Initial backbone weights when they are a file made by this workflow (e.g. results/cam/backbone.pth)."""
    weights = json.loads(experiment_settings(wildcards.experiment)[1]).get("weights", "none")
    return [weights] if str(weights).startswith("results/") else []


def maps_split(wildcards):
    """Experiments need maps for the whole training split (pseudo masks); ablation cells only for scoring."""
    return SPLITS["train"] if wildcards.experiment in EXPERIMENTS else SPLITS["local_maps"]


def cam_shards(wildcards):
    return expand("results/{experiment}/cams/shard_{shard}", experiment=wildcards.experiment, shard=SHARDS)


def training_masks(wildcards):
    """Pseudo masks of the experiment; nothing for the ground-truth upper bound (the dataset has them)."""
    if wildcards.experiment == "ground_truth":
        return []
    return f"results/{wildcards.experiment}/pseudo_masks/merged"


def experiment_results(experiment):
    """Every score file the summary reads for one experiment."""
    seg = [f"results/{experiment}/segmentation/val.json", f"results/{experiment}/segmentation/val_crf.json"]
    if experiment == "ground_truth":
        return seg
    return [f"results/{experiment}/local_maps.json", f"results/{experiment}/pseudo_masks.json",
            f"results/{experiment}/pseudo_masks_ignore.json"] + seg  # fmt: skip
