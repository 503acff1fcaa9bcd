# Pretraining: a ResNet trained with full supervision on the synthetic corpus (rpc/data/corpus.py), the offline
# stand-in for ImageNet weights. Cached like every stage: only the `pretrain:` settings rerun it.
rule pretrain_backbone:
    output:
        weights=trained_model(PRETRAINED),
        report="results/pretrain/report.json",
    params:
        gpu_slot=gpu_slot,
        settings=lambda wc: key_values(config["pretrain"], json.dumps),
        work="work/pretrain",
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/pretrain.log",
    benchmark:
        "logs/pretrain.benchmark.tsv"
    threads: stage_threads("pretrain")
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=GPU_PER_JOB,
    shell:
        "OMP_NUM_THREADS={threads} {params.gpu_slot}python -m rpc pretrain --out {output.weights:q} --report {output.report:q}"
        " --work {params.work:q} --set {params.settings} > {log:q} 2>&1"
