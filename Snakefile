# RPC weakly supervised semantic segmentation: the workflow entry point.
# `snakemake --cores all` runs the embedded default (config/config.yaml: synthetic data, CPU).
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/classifier.smk"
include: "workflow/rules/cams.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/summary.md",
    default_target: True


rule classifier:
    input:
        expand("results/{experiment}/classifier.pt", experiment=EXPERIMENTS),


rule cams:
    input:
        expand("results/{experiment}/local_maps.json", experiment=EXPERIMENTS),
