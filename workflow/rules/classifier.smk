# RPC classifier training (GPU). Checkpoints live in work/, outside the declared output, so a killed job resumes.
rule train_classifier:
    input:
        dataset=DATASET,
        weights=initial_weights,
    output:
        model=trained_model("results/{experiment}/classifier.pt"),
        log="results/{experiment}/train_log.json",  # the losses and learning rate per logged step
    params:
        # only the leaves this rule uses: a change here retrains, a CRF change does not
        preset=lambda wc: experiment_settings(wc.experiment)[0],
        model=lambda wc: experiment_settings(wc.experiment)[1],
        train=lambda wc: experiment_settings(wc.experiment)[2],
        split=SPLITS["train"],
        work="work/{experiment}/classifier",
        python=python_launcher,
        gpu_slot=gpu_slot,
        # every `section.key=value` override as one shell-quoted argument
        sets=lambda wc: " ".join(
            [shell_quote(f"train.split={json.dumps(SPLITS['train'])}")]
            + [overrides(section, json_text) for section, json_text in zip(
                ("model", "train"), experiment_settings(wc.experiment)[1:])]
        ),
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/train_classifier.log",
    benchmark:
        "logs/{experiment}/train_classifier.benchmark.tsv"
    threads: stage_threads("train")
    resources:
        mem_mb=16000,
        runtime=runtime_of("classifier"),
        gpu=GPU_PER_JOB,
    shell:
        "OMP_NUM_THREADS={threads} {params.gpu_slot}{params.python} -m rpc train --dataset {input.dataset:q} --work {params.work:q}"
        " --out {output.model:q} --preset {params.preset:q} --set {params.sets} > {log:q} 2>&1"


rule export_backbone:
    input:
        "results/{experiment}/classifier.pt",
    output:
        "results/{experiment}/backbone.pth",
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/export_backbone.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    shell:
        "python -m rpc export-backbone --model {input:q} --out {output:q} > {log:q} 2>&1"
