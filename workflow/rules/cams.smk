rule rs_cams:
    input:
        model="results/{experiment}/classifier.pt",
        dataset=DATASET,
    output:
        directory("results/{experiment}/cams/shard_{shard}"),
    params:
        split=config["cams"]["split"],
        shards=config["cams"]["shards"],
        scales=" ".join(str(s) for s in config["cams"]["scales"]),
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/{experiment}/rs_cams_{shard}.log",
    benchmark:
        "benchmarks/out/{experiment}/rs_cams_{shard}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        "OMP_NUM_THREADS={threads} python -m rpc cams --model {input.model} --dataset {input.dataset} --split {params.split}"
        " --out {output} --shard {wildcards.shard} --num-shards {params.shards} --scales {params.scales}"
        " --save-stages --workers 0 > {log} 2>&1"


rule eval_cams:
    input:
        dataset=DATASET,
        cams=expand("results/{{experiment}}/cams/shard_{shard}", shard=SHARDS),
    output:
        json="results/{experiment}/local_maps.json",
        md="results/{experiment}/local_maps.md",
    params:
        split=config["cams"]["split"],
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/{experiment}/eval_cams.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python -m rpc eval-cams --dataset {input.dataset} --split {params.split} --cams {input.cams}"
        " --json {output.json} --md {output.md} --title 'Local.Maps: {wildcards.experiment}' > {log} 2>&1"
