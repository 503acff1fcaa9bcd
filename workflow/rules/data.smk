rule prepare_synthetic:
    output:
        raw=directory("results/data/raw"),
        prepared=directory(DATASET),
    params:
        synthetic=lambda wc: config["dataset"]["synthetic"],
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/data/prepare.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python -m rpc synth --out {output.raw} --prepared {output.prepared}"
        " --size {params.synthetic[size]} --n-train {params.synthetic[n_train]}"
        " --n-train-eval {params.synthetic[n_train_eval]} --n-val {params.synthetic[n_val]}"
        " --seed {params.synthetic[seed]} > {log} 2>&1"
