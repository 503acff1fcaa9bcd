# Scores: Local.Maps (maps), +denseCRF (pseudo masks, both conventions for 255), DeepLab val (with/without CRF).
rule eval_cams:
    input:
        dataset=DATASET,
        cams=cam_shards,
    output:
        json="results/{experiment}/local_maps.json",
        md="results/{experiment}/local_maps.md",
    params:
        split=SPLITS["local_maps"],
        title=lambda wc: f"Local.Maps: {wc.experiment}",
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/eval_cams.log",
    benchmark:
        "logs/{experiment}/eval_cams.benchmark.tsv"
    threads: 1  # processes scoring the images (profiles/slurm sets more)
    resources:
        mem_mb=scoring_mem_mb,
        runtime=60,
    shell:
        "python -m rpc eval-cams --dataset {input.dataset:q} --split {params.split:q} --cams {input.cams:q}"
        " --json {output.json:q} --md {output.md:q} --title {params.title:q} --workers {threads} > {log:q} 2>&1"


rule eval_pseudo_masks:
    input:
        dataset=DATASET,
        masks="results/{experiment}/pseudo_masks/merged",
    output:
        bg="results/{experiment}/pseudo_masks.json",
        ignore="results/{experiment}/pseudo_masks_ignore.json",
        md="results/{experiment}/pseudo_masks.md",
    params:
        split=SPLITS["local_maps"],
        title=lambda wc: f"Pseudo masks: {wc.experiment}",
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/eval_pseudo_masks.log",
    benchmark:
        "logs/{experiment}/eval_pseudo_masks.benchmark.tsv"
    threads: 1  # processes scoring the images (profiles/slurm sets more)
    resources:
        mem_mb=scoring_mem_mb,
        runtime=60,
    shell:
        "(python -m rpc eval-masks --dataset {input.dataset:q} --split {params.split:q} --pred {input.masks:q} --workers {threads}"
        " --uncertain background --json {output.bg:q} --md {output.md:q} --title {params.title:q}"
        " && python -m rpc eval-masks --dataset {input.dataset:q} --split {params.split:q} --pred {input.masks:q} --workers {threads}"
        " --uncertain ignore --json {output.ignore:q}) > {log:q} 2>&1"


rule eval_parts:
    input:
        dataset=DATASET,
        cams=cam_shards,
        masks="results/{experiment}/pseudo_masks/merged",
    output:
        "results/{experiment}/parts.json",
    params:
        split=SPLITS["local_maps"],
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/eval_parts.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "python -m rpc eval-parts --dataset {input.dataset:q} --split {params.split:q} --cams {input.cams:q}"
        " --masks {input.masks:q} --json {output:q} > {log:q} 2>&1"


rule eval_segmentation:
    wildcard_constraints:
        experiment=NOT_UPPER_BOUND_RUN,  # the upper bound: upper_bound.smk
    input:
        dataset=DATASET,
        pred="results/{experiment}/segmentation/pred",
        crf="results/{experiment}/segmentation/pred_crf",
    output:
        raw="results/{experiment}/segmentation/val.json",
        crf="results/{experiment}/segmentation/val_crf.json",
        md="results/{experiment}/segmentation/val.md",
    params:
        split=SPLITS["val"],
        # built here and quoted once in the command: a split name with a space or `$(...)` stays one argument
        title=lambda wc: f"DeepLab {SPLITS['val']}: {wc.experiment}",
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/eval_segmentation.log",
    benchmark:
        "logs/{experiment}/eval_segmentation.benchmark.tsv"
    threads: 1  # processes scoring the images (profiles/slurm sets more)
    resources:
        mem_mb=scoring_mem_mb,
        runtime=60,
    shell:
        "(python -m rpc eval-masks --dataset {input.dataset:q} --split {params.split:q} --pred {input.pred:q} --workers {threads}"
        " --json {output.raw:q} --md {output.md:q} --title {params.title:q}"
        " && python -m rpc eval-masks --dataset {input.dataset:q} --split {params.split:q} --pred {input.crf:q} --workers {threads}"
        " --json {output.crf:q}) > {log:q} 2>&1"
