# Dense-CRF pseudo masks: shard i of the maps -> shard i of the masks (scatter), then one merged folder (gather).
rule pseudo_masks_shard:
    input:
        dataset=DATASET,
        cams="results/{experiment}/cams/shard_{shard}",
    output:
        # copied into merged/ by the next rule and read by nothing else: removed then (--notemp keeps it)
        temp(directory("results/{experiment}/pseudo_masks/shard_{shard}")),
    params:
        split=maps_split,  # the split the maps cover: an ablation run's pseudo masks (part scores) cover the scored one
        shards=config["cams"]["shards"],
        crf=key_values(config["crf"]),
        work="work/{experiment}/pseudo_masks/shard_{shard}",  # finished masks survive a killed job
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/pseudo_masks_{shard}.log",
    benchmark:
        "logs/{experiment}/pseudo_masks_{shard}.benchmark.tsv"
    threads: 2
    resources:
        mem_mb=pseudo_mem_mb,
        runtime=runtime_of("pseudo_masks"),
    shell:
        "python -m rpc pseudo-masks --dataset {input.dataset:q} --split {params.split:q} --cams {input.cams:q} --out {output:q}"
        " --shard {wildcards.shard} --num-shards {params.shards:q} --workers {threads} --set {params.crf} --work {params.work:q} > {log:q} 2>&1"


rule merge_pseudo_masks:
    input:
        expand("results/{{experiment}}/pseudo_masks/shard_{shard}", shard=SHARDS),
    output:
        directory("results/{experiment}/pseudo_masks/merged"),
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/merge_pseudo_masks.log",
    benchmark:
        "logs/{experiment}/merge_pseudo_masks.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    shell:
        "python -m rpc merge-dirs --inputs {input:q} --out {output:q} > {log:q} 2>&1"
