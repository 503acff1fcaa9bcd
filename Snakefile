# RPC weakly supervised semantic segmentation: the workflow entry point.
# `snakemake --cores all` runs the embedded default (config/config.yaml: synthetic data, CPU).
# Real data: --configfile config/voc.yaml (or coco.yaml) with dataset.root set.
import shlex
import sys
from pathlib import Path

import yaml

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, update_config, validate

# This file's folder (also when it is used as a Snakemake `module` or run with `-s` from another folder): the
# shipped config/, the rules and the rpc package are found from here, never from the working directory.
WORKFLOW_DIR = Path(str(workflow.current_basedir)).resolve()
sys.path.insert(0, str(WORKFLOW_DIR))

from rpc.utils.config_schema import brace_error, coerce, first_error, load_schema, missing_file, resolve_paths
from rpc.utils.snakemake_lock import write_holder_record

min_version("9.0")

# The base is the embedded default, unless the first `--configfile` is itself a base (it sets `dataset.kind`,
# like config/voc.yaml): then it REPLACES the default, so the demo's training sizes never leak into a real run.
# Every further file is an overlay, merged in order on top (`--configfile config/voc.yaml small.yaml`, or just
# `--configfile crf40.yaml` / `config/creatures.yaml` over the default); `--config k=v` updates single keys last.
_given = [Path(f) for f in workflow.overwrite_configfiles or []]
_first = yaml.safe_load(_given[0].read_text()) or {} if _given else {}
_used_default_base = "kind" not in (_first.get("dataset") or {})
if _used_default_base:
    _merged = yaml.safe_load((WORKFLOW_DIR / "config" / "config.yaml").read_text())
    update_config(_merged, config)  # recursively: what was given wins
    config.clear()
    config.update(_merged)


# `--config` values arrive as strings: read them as YAML where the schema wants a number, boolean, list or mapping
# (rpc/utils/config_schema.py), then name the first problem in one line before Snakemake fills in the defaults:
# a brace in the folders or in a path or value (Snakemake would read it as a wildcard), a value the schema refuses.
_schema = load_schema(WORKFLOW_DIR / "workflow" / "schemas" / "config.schema.yaml")
_typed = coerce(dict(config), _schema)
config.clear()
config.update(_typed)
_problem = brace_error({}, {"working directory": Path.cwd(), "workflow's folder": WORKFLOW_DIR})
_problem = _problem or first_error(config, _schema) or brace_error(config)
if _problem:
    raise WorkflowError(_problem)
validate(config, "workflow/schemas/config.schema.yaml")
# Real data never gets the demo's recipe (ResNet-18, 128 px crops, the synthetic pretraining): a VOC or COCO
# dataset given on top of the embedded default, by --config or an overlay, stops with the file to add.
if _used_default_base and config["dataset"]["kind"] != "synthetic":
    _kind = config["dataset"]["kind"]
    raise WorkflowError(
        f"dataset.kind={_kind} on top of the embedded default would train with the synthetic demo's recipe: add "
        f"--configfile config/{_kind}.yaml as the first config file (then your overlays and --config), or run "
        f"`make run CONFIG=config/{_kind}.yaml ARGS=\"--config dataset=...\"`"
    )
# config keys naming shipped files (the ablation grid, the mmseg config): a relative path is looked up in the
# working directory first, then in this workflow's folder
resolve_paths(config, WORKFLOW_DIR)
# the files the run starts from (the mmseg config, the ablation grid, backbone weights given as a path) must exist
_problem = missing_file(config, WORKFLOW_DIR)
if _problem:
    raise WorkflowError(_problem)


# Every job's `python -m rpc` imports this workflow's own rpc/ package, also inside a `--sdm conda` environment
# (envs/rpc.yaml holds only the dependencies). Bash's strict mode stays on, as Snakemake's default prefix has it.
# `tensorboard: true` reaches the trainers as RPC_TENSORBOARD=1: logging changes no number, so it is no rule's
# param and turning it on or off reruns nothing.
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={shlex.quote(str(WORKFLOW_DIR))}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    + ("export RPC_TENSORBOARD=1; " if config["tensorboard"] else "")
)


report: "workflow/report/workflow.rst"


# Once Snakemake holds the folder's lock (never in a dry run), it says who holds it, so that `rpc unlock-stale`
# (make run) can tell a lock left by a killed run from the lock of a run that still goes (rpc/utils/snakemake_lock.py).
onstart:
    write_holder_record(".")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/classifier.smk"
include: "workflow/rules/cams.smk"
include: "workflow/rules/crf.smk"
include: "workflow/rules/segmentation.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/upper_bound.smk"


# A run is one experiment with one seed: results/<experiment>-s<seed>/ (RUN_NAMES, workflow/rules/common.smk),
# or another method's imported maps: results/<name>/ (IMPORTED; MAP_RUNS holds both).
rule all:
    input:
        "results/summary.md",
        "results/summary.html",
        expand("results/{experiment}/summary.md", experiment=SEG_RUNS),
        expand("results/{experiment}/figures/maps", experiment=MAP_RUNS),
        expand("results/{experiment}/figures/predictions", experiment=SEG_RUNS),
    default_target: True


# Named targets for partial runs (each also runs what it needs).
rule pretrain:
    input:
        PRETRAINED,


rule classifier:
    input:
        expand("results/{experiment}/classifier.pt", experiment=RUN_NAMES),


rule cams:
    input:
        expand("results/{experiment}/local_maps.json", experiment=MAP_RUNS),


rule pseudo_masks:
    input:
        expand("results/{experiment}/pseudo_masks.json", experiment=MAP_RUNS),


rule segmentation:
    input:
        expand("results/{experiment}/segmentation/val.json", experiment=SEG_RUNS),


rule ablations:
    input:
        "results/ablations.md",


rule mmseg:
    input:
        expand("results/{experiment}/segmentation/mmseg/checkpoint.pth", experiment=SEG_RUNS),


rule report:
    input:
        rules.all.input,


# Small jobs run on the machine that runs Snakemake, not through a cluster's queue (profiles/slurm): the named
# targets, summaries, figures (a dozen images each) and the report pages, which each take seconds at any dataset
# size. What reads every image of a split - imported maps, the merge of the pseudo-mask shards, every scoring rule
# (eval_cams, eval_pseudo_masks, eval_parts, eval_segmentation*) - is a job of its own on a cluster (hours and
# hundreds of GB read on COCO); a local run runs every job on this machine either way.
localrules:
    all,
    pretrain,
    classifier,
    cams,
    pseudo_masks,
    segmentation,
    ablations,
    mmseg,
    report,
    export_backbone,
    export_mmseg,
    figures_maps,
    figures_predictions,
    figures_predictions_upper_bound,
    experiment_summary,
    experiment_summary_upper_bound,
    summary,
    ablation_tables,
    report_pages,
