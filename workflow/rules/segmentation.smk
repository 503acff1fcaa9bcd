# DeepLabv2 (mmseg) on the pseudo masks (or the ground truth for the upper bound), then val predictions.
rule train_segmentation:
    wildcard_constraints:
        experiment=NOT_UPPER_BOUND_RUN,  # the upper bound: upper_bound.smk
    input:
        dataset=DATASET,
        masks=training_masks,
        # the mmseg config and its bases are inputs: editing them retrains
        config=config["segmentation"]["config"],
        bases=MMSEG_BASES,
        backbone=segmentation_weights,
    output:
        model=trained_model("results/{experiment}/segmentation/model.pt"),
        log="results/{experiment}/segmentation/train_log.json",  # mmengine's scalars per logged iteration
    params:
        options=" ".join(shell_quote(o) for o in config["segmentation"]["options"]),
        split=SPLITS["train"],
        masks=lambda wc, input: input.masks or "ground-truth",
        work="work/{experiment}/segmentation",
        python=python_launcher,
        gpu_slot=gpu_slot,
        launcher=lambda wc, resources: "pytorch" if gpu_count(resources) > 1 else "none",
        backbone=lambda wc, input: f"--backbone-weights {shell_quote(input.backbone)}" if input.backbone else "",
        amp=config["segmentation"]["amp"],
        # the run's seed (the upper bound: the first seed), so the spread over seeds includes DeepLab's own
        seed=lambda wc: run_seed(wc.experiment),
        deterministic="--deterministic" if config["segmentation"]["deterministic"] else "",
        epochs=f"--epochs {config['segmentation']['epochs']}" if config["segmentation"]["epochs"] else "",
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/train_segmentation.log",
    benchmark:
        "logs/{experiment}/train_segmentation.benchmark.tsv"
    threads: stage_threads("segmentation")
    resources:
        mem_mb=16000,
        runtime=runtime_of("deeplab"),
        gpu=GPU_PER_JOB,
    shell:
        "OMP_NUM_THREADS={threads} {params.gpu_slot}{params.python} -m rpc seg-train --config {input.config:q} --dataset {input.dataset:q}"
        " --split {params.split:q} --masks {params.masks:q} --work {params.work:q} --out {output.model:q}"
        " --launcher {params.launcher} {params.backbone} --amp {params.amp:q} --seed {params.seed} {params.deterministic}"
        " {params.epochs}"
        " --set {params.options} > {log:q} 2>&1"


# Predictions in segmentation.predict_shards jobs, each one shard of the scored split (scatter): the GPU job writes
# the argmax and the class scores, a CPU job of its own refines the scores with the CRF, so the GPU goes on with
# the next shard meanwhile; then one pred/ and one pred_crf/ folder (gather), as the maps and the pseudo masks.
rule predict_segmentation:
    wildcard_constraints:
        experiment=NOT_UPPER_BOUND_RUN,  # the upper bound: upper_bound.smk
    input:
        model="results/{experiment}/segmentation/model.pt",
        dataset=DATASET,
    output:
        # copied into pred/ by merge_predictions, read by crf_predictions: removed after both (--notemp keeps it)
        pred=temp(directory("results/{experiment}/segmentation/pred_shards/shard_{shard}/pred")),
        scores=temp(directory("results/{experiment}/segmentation/pred_shards/shard_{shard}/scores")),
    params:
        split=SPLITS["val"],
        shards=config["segmentation"]["predict_shards"],
        scales=" ".join(str(s) for s in config["segmentation"]["scales"]),
        flip="--flip" if config["segmentation"]["flip"] else "",
        work="work/{experiment}/predict/shard_{shard}",  # finished predictions survive a killed job
        gpu_slot=gpu_slot,
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/predict_segmentation_{shard}.log",
    benchmark:
        "logs/{experiment}/predict_segmentation_{shard}.benchmark.tsv"
    threads: stage_threads("predict")
    resources:
        mem_mb=8000,
        runtime=runtime_of("predict"),
        gpu=GPU_PER_JOB,
    shell:
        "OMP_NUM_THREADS={threads} {params.gpu_slot}python -m rpc seg-predict --model {input.model:q} --dataset {input.dataset:q}"
        " --split {params.split:q} --out {output.pred:q} --scores-out {output.scores:q} --scales {params.scales} {params.flip}"
        " --shard {wildcards.shard} --num-shards {params.shards} --work {params.work:q} > {log:q} 2>&1"


rule crf_predictions:
    wildcard_constraints:
        experiment=NOT_UPPER_BOUND_RUN,  # the upper bound: upper_bound.smk
    input:
        dataset=DATASET,
        scores="results/{experiment}/segmentation/pred_shards/shard_{shard}/scores",
    output:
        temp(directory("results/{experiment}/segmentation/pred_shards/shard_{shard}/pred_crf")),
    params:
        split=SPLITS["val"],
        shards=config["segmentation"]["predict_shards"],
        crf=key_values(config["segmentation"]["crf"]),
        work="work/{experiment}/predict_crf/shard_{shard}",  # finished masks survive a killed job
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/crf_predictions_{shard}.log",
    benchmark:
        "logs/{experiment}/crf_predictions_{shard}.benchmark.tsv"
    threads: 2
    resources:
        mem_mb=crf_mem_mb,
        runtime=runtime_of("crf_predictions"),
    shell:
        "python -m rpc seg-crf --dataset {input.dataset:q} --split {params.split:q} --scores {input.scores:q} --out {output:q}"
        " --shard {wildcards.shard} --num-shards {params.shards} --workers {threads} --set {params.crf} --work {params.work:q}"
        " > {log:q} 2>&1"


rule merge_predictions:
    wildcard_constraints:
        experiment=NOT_UPPER_BOUND_RUN,  # the upper bound: upper_bound.smk
    input:
        pred=expand("results/{{experiment}}/segmentation/pred_shards/shard_{shard}/pred", shard=PREDICT_SHARDS),
        crf=expand("results/{{experiment}}/segmentation/pred_shards/shard_{shard}/pred_crf", shard=PREDICT_SHARDS),
    output:
        pred=directory("results/{experiment}/segmentation/pred"),
        crf=directory("results/{experiment}/segmentation/pred_crf"),
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/merge_predictions.log",
    benchmark:
        "logs/{experiment}/merge_predictions.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    shell:
        "(python -m rpc merge-dirs --inputs {input.pred:q} --out {output.pred:q}"
        " && python -m rpc merge-dirs --inputs {input.crf:q} --out {output.crf:q}) > {log:q} 2>&1"


# The trained DeepLab as mmseg's own tools open it (init_model / inference_model, tools/test.py): a config.py and a
# standard mmengine checkpoint. Not part of `all` (it repeats the weights): `snakemake --cores all mmseg`.
rule export_mmseg:
    input:
        "results/{experiment}/segmentation/model.pt",
    output:
        config="results/{experiment}/segmentation/mmseg/config.py",
        checkpoint="results/{experiment}/segmentation/mmseg/checkpoint.pth",
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/export_mmseg.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    shell:
        "python -m rpc export-mmseg --model {input:q} --out $(dirname {output.config:q}) > {log:q} 2>&1"
