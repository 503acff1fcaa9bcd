# Helpers shared by the rules (only here): the experiment plan's names, the dataset root check, per-rule config
# leaves, threads, memory and time limits.
import json
import math
import re
import shlex
from pathlib import Path

import yaml

from snakemake.exceptions import WorkflowError

from rpc.data.foreign_maps import source_manifest
from rpc.data.roots import check_root
from rpc.utils import job_time
from rpc.utils.gpus import local_gpu_count
from rpc.utils.plan import PRETRAINED, UPPER_BOUND, Plan

PRETRAIN_REPORT = "results/pretrain/report.json"  # held-out accuracy per epoch (the report's curves)

# The experiment plan (rpc/utils/plan.py): runs = experiment x seed; ablation cells (config/ablations.yaml) are
# classifiers like the experiments, each over its seeds, and a main run of the same name wins (the `rpc` cell's
# seed-15 run reuses results/rpc-s15/); other methods' maps brought in (config `imported_maps`) are runs of their
# own, through the same CRF, DeepLab and scores but without a classifier; DeepLab on the ground truth (the upper
# bound) once per seed when asked.
ABLATIONS = yaml.safe_load(Path(config["ablations"]).read_text())
validate(ABLATIONS, "../schemas/ablations.schema.yaml")  # unknown keys are errors, named
PLAN = Plan.from_config(config, ABLATIONS, config["ablations"])
SEEDS = config["seeds"]
EXPERIMENTS = list(config["experiments"])  # the configured names (rpc, sipe, cam)
RUNS = PLAN.runs
RUN_NAMES = list(RUNS)
ABLATION_RUNS = PLAN.ablation_runs
CLASSIFIERS = PLAN.classifiers
IMPORTED = PLAN.imported
MAP_RUNS = PLAN.map_runs  # every run with maps and pseudo masks
UPPER_BOUND_RUNS = PLAN.upper_bound_runs
UNSEEDED_RUNS = list(IMPORTED)
SEG_RUNS = PLAN.segmentation_runs
is_upper_bound = PLAN.is_upper_bound
run_seed = PLAN.seed
uses_pretrained = PLAN.uses_pretrained
experiment_settings = PLAN.classifier_settings  # (preset, model JSON, train JSON) of a classifier run
SHARDS = list(range(config["cams"]["shards"]))
PREDICT_SHARDS = list(range(config["segmentation"]["predict_shards"]))
SPLITS = config["splits"]
DATASET = "results/data/prepared"
KIND = config["dataset"]["kind"]
# What the prepared dataset was made from (kind, root, the synthetic generator's settings), written beside it by
# prepare_dataset: a run whose config names another dataset stops here instead of replacing every finished run.
DATASET_RECORD = f"{DATASET}/workflow_dataset.json"


def dataset_identity():
    d = config["dataset"]
    return {"kind": d["kind"], "root": d.get("root"), "synthetic": d.get("synthetic") if d["kind"] == "synthetic" else None}


if Path(DATASET_RECORD).is_file():
    _made_from = json.loads(Path(DATASET_RECORD).read_text())
    if _made_from != json.loads(json.dumps(dataset_identity())):
        _changed = sorted(k for k in dataset_identity() if _made_from.get(k) != dataset_identity()[k])
        raise WorkflowError(
            f"{Path.cwd() / 'results'} holds the runs of another dataset (dataset.{', dataset.'.join(_changed)} "
            f"differ): run this config in a folder of its own (`make run CONFIG=<file>`, or snakemake -d "
            f"runs/<name> ...), or remove results/ to start over"
        )


# A cluster profile's placeholders (profiles/slurm: "<account>", "<gpu-partition>") left as they are would reach
# sbatch on the first submission: name the first one now.
def _placeholders():
    settings = workflow.resource_settings
    scopes = [("default-resources", settings.default_resources or {})]
    scopes += [(f"set-resources {rule}", res) for rule, res in (settings.overwrite_resources or {}).items()]
    for where, resources in scopes:
        for name, resource in resources.items():
            raw = getattr(resource, "raw", None)
            if isinstance(raw, str) and re.fullmatch(r"<[^<>]+>", raw.strip()):
                yield where, name, raw.strip()


for _where, _name, _raw in _placeholders():
    raise WorkflowError(f"the profile's {_where}: {_name} is still the placeholder {_raw!r}; fill in your cluster's "
                        f"value in its config.yaml (profiles/slurm/config.yaml: account and partitions)")


MMSEG_BASES = sorted(str(p) for p in Path(config["segmentation"]["config"]).parent.glob("_base_/**/*.py"))


def one_of(names):
    """A wildcard constraint matching exactly these names (none: matches nothing), so that the maps of a run come
    from exactly one of rs_cams (a classifier run) and import_maps (an imported one)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


# The upper bound's DeepLab jobs run under rules of their own (workflow/rules/upper_bound.smk): the same rules as the
# methods', renamed, so that the report's workflow graph draws each rule once. These constraints keep the two apart.
UPPER_BOUND_RUN = one_of(UPPER_BOUND_RUNS)
NOT_UPPER_BOUND_RUN = rf"(?!(?:{UPPER_BOUND_RUN})/)[A-Za-z0-9_-]+"  # every run name but those (each is followed by /)


wildcard_constraints:
    experiment="[A-Za-z0-9_-]+",
    shard=r"\d+",


def dataset_root():
    """The configured dataset root, checked for the expected layout by rpc.data.roots (a clear error instead of a
    late failure); None for the synthetic data."""
    return check_root(KIND, config["dataset"].get("root"))


def shell_quote(value):
    """One shell argument, whatever the value holds (spaces, quotes, `;`)."""
    return shlex.quote(str(value))


def overrides(section, settings_json):
    """`section.key=value` arguments for `python -m rpc train --set`, each shell-quoted."""
    return " ".join(shell_quote(f"{section}.{k}={json.dumps(v)}") for k, v in json.loads(settings_json).items())


def key_values(mapping, encode=str):
    """`key=value` arguments (CRF parameters, pretraining settings), each shell-quoted."""
    return " ".join(shell_quote(f"{k}={encode(v)}") for k, v in sorted(mapping.items()))


def run_cores():
    """The run's core count; commands that run no job (--unlock, --report, --summary, --dag) give none, and for
    them any count will do (1)."""
    try:
        return workflow.cores
    except WorkflowError:  # "Workflow requires a total number of cores to be defined"
        return 1


def stage_threads(stage):
    """Threads of a model stage's job (config `cpu_threads`): `all` = every core of the run, `per_gpu` = the run's
    cores divided between this machine's GPUs (at least 1), else at most that many. A cluster profile's
    set-threads overrides this per rule."""
    value = config["cpu_threads"][stage]
    cores = run_cores()
    if value == "all":
        return cores
    if value == "per_gpu":
        return max(1, cores // max(1, local_gpu_count()))
    return min(int(value), cores)


def pool_mem_mb(worker_mb, workers_from=1):
    """The `mem_mb` of a job that runs its images in worker processes, one per thread: the main process (1000 MB)
    and `worker_mb` per worker; a job of fewer than `workers_from` threads works in its main process alone."""
    def mem_mb(wildcards, threads):
        return 1000 + (threads if threads >= workers_from else 0) * worker_mb

    return mem_mb


# Peak memory of one worker of each pool: the predictions' CRF refines all the dataset's classes (docs/speed.md,
# "Memory of the predictions' CRF"); the pseudo masks' CRF holds one image's maps of its present classes; a
# scoring worker one image's map or mask and its ground truth (docs/speed.md, "The scale rehearsal").
CRF_WORKER_MB = 2500 if KIND == "coco" else 600
PSEUDO_WORKER_MB = 600
SCORING_WORKER_MB = 500
crf_mem_mb = pool_mem_mb(CRF_WORKER_MB)
pseudo_mem_mb = pool_mem_mb(PSEUDO_WORKER_MB)
scoring_mem_mb = pool_mem_mb(SCORING_WORKER_MB, workers_from=2)  # one thread: scored in the main process


def split_size(split):
    """Images of a split: its list's line count once the dataset is prepared, the standard count before."""
    listed = Path(DATASET) / "lists" / f"{split}.txt"
    count = sum(1 for line in listed.read_text().splitlines() if line.strip()) if listed.is_file() else None
    if count is None and KIND == "synthetic":  # the generator's own counts
        synthetic = config["dataset"]["synthetic"]
        count = {"train_aug": synthetic["n_train"], "train": synthetic["n_train_eval"], "val": synthetic["n_val"]}.get(split)
    return job_time.split_images(KIND, split, count)


def mmseg_schedule():
    """(max_iters, batch) of the mmseg config, read as text (the file is data to Snakemake; mmengine parses it)."""
    text = Path(config["segmentation"]["config"]).read_text()
    found = [re.search(rf"\b{key}\s*=\s*(\d+)", text) for key in ("max_iters", "batch_size")]
    return tuple(int(m[1]) if m else default for m, default in zip(found, (20000, 10)))


def deeplab_iterations():
    iters, batch = mmseg_schedule()
    epochs = config["segmentation"]["epochs"]
    return math.ceil(epochs * split_size(SPLITS["train"]) / batch) if epochs else iters


CLASS_COUNT = {"voc": 21, "coco": 81}.get(KIND, 21)


def runtime_of(stage):
    """The `runtime` resource (minutes) of a stage's job from its work and measured rates (rpc/utils/job_time.py);
    a retry asks for twice the time."""
    def minutes(wildcards, threads, attempt):
        if stage == "classifier":
            epochs = json.loads(experiment_settings(wildcards.experiment)[2]).get("epochs", job_time.TRAIN_EPOCHS)
            work = job_time.work_seconds(stage, KIND, split_size(SPLITS["train"]), epochs=epochs)
        elif stage in ("maps", "pseudo_masks"):
            work = job_time.work_seconds(stage, KIND, math.ceil(split_size(maps_split(wildcards)) / len(SHARDS)))
        elif stage == "deeplab":
            work = job_time.work_seconds(stage, KIND, iterations=deeplab_iterations())
        else:  # the predictions and their CRF, one shard of the scored split
            images = math.ceil(split_size(SPLITS["val"]) / len(PREDICT_SHARDS))
            passes = len(config["segmentation"]["scales"]) * (2 if config["segmentation"]["flip"] else 1)
            work = job_time.work_seconds(stage, KIND, images, passes=passes, classes=CLASS_COUNT)
        cpu_stage = stage in ("pseudo_masks", "crf_predictions")
        return job_time.minutes(work, threads if cpu_stage else 1, attempt)

    return minutes


def trained_model(path):
    """A trained model's output path, write-protected when the config asks (`protect_models`)."""
    return protected(path) if config["protect_models"] else path


# The model rules ask for one GPU only where the machine shows one, so on a CPU-only machine profiles/local's
# `gpu: 1` limit does not run them one at a time. A cluster profile sets `gpu` per rule itself (profiles/slurm).
GPU_PER_JOB = min(1, local_gpu_count())


def gpu_count(resources):
    return int(getattr(resources, "gpu", 0) or 0)


def gpu_slot(wildcards, resources):
    """A GPU job's command starts with its own device(s) locked and alone visible (rpc/utils/gpu_slots.py): jobs
    started together get different GPUs, and wait for one when all are taken. Only where Snakemake runs the jobs on
    this machine: a cluster's scheduler assigns a job its devices itself. Nothing for a CPU-only job."""
    gpus = gpu_count(resources)
    if not gpus or workflow.non_local_exec or workflow.remote_exec:
        return ""
    return f"python -m rpc.utils.gpu_slots --gpus {gpus} -- "


def python_launcher(wildcards, resources):
    """`python` on one device; `torchrun` over the job's GPUs when it has more than one."""
    gpus = gpu_count(resources)
    if gpus > 1:
        return f"torchrun --nproc-per-node {gpus} --rdzv-backend c10d --rdzv-endpoint localhost:0"
    return "python"


def initial_weights(wildcards):
    """Initial backbone weights when they are a file made by this workflow (e.g. results/cam/backbone.pth)."""
    weights = json.loads(experiment_settings(wildcards.experiment)[1]).get("weights", "none")
    return [weights] if str(weights).startswith("results/") else []  # e.g. the pretrained backbone


def maps_split(wildcards):
    """The split a run's maps (and so its pseudo masks) cover: main runs and imported maps the whole training split
    (DeepLab trains on their pseudo masks); ablation runs only the scored split."""
    return SPLITS["train"] if wildcards.experiment in RUNS or wildcards.experiment in IMPORTED else SPLITS["local_maps"]


def cam_shards(wildcards):
    return expand("results/{experiment}/cams/shard_{shard}", experiment=wildcards.experiment, shard=SHARDS)


def training_masks(wildcards):
    """Pseudo masks of the experiment; nothing for the ground-truth upper bound (the dataset has them)."""
    if is_upper_bound(wildcards.experiment):
        return []
    return f"results/{wildcards.experiment}/pseudo_masks/merged"


def segmentation_weights(wildcards):
    """DeepLab's backbone init when it is the pretraining stage's output."""
    return [PRETRAINED] if config["segmentation"]["weights"] == "pretrained" else []


def has_parts():
    """Part-level scores need the synthetic benchmark's SegmentationPart/ masks."""
    return KIND == "synthetic"


def experiment_results(experiment):
    """Every score file the summary reads for one run: the outputs of the evaluation rules (evaluation.smk,
    included before the summaries use this), so the summary's declared inputs follow the rules that write them."""
    fill = lambda path: path.format(experiment=experiment)
    seg = [fill(rules.eval_segmentation.output.raw), fill(rules.eval_segmentation.output.crf)]
    if is_upper_bound(experiment):
        return seg
    parts = [fill(rules.eval_parts.output[0])] if has_parts() else []
    maps = [fill(rules.eval_cams.output.json)]
    masks = [fill(rules.eval_pseudo_masks.output.bg), fill(rules.eval_pseudo_masks.output.ignore)]
    return maps + masks + seg + parts
