# RS-CAMs, scattered in shards of the training split (independent jobs; one GPU each when present).
rule rs_cams:
    input:
        model="results/{experiment}/classifier.pt",
        dataset=DATASET,
    output:
        directory("results/{experiment}/cams/shard_{shard}"),
    wildcard_constraints:
        experiment=one_of(CLASSIFIERS),
    params:
        split=maps_split,
        shards=config["cams"]["shards"],
        scales=" ".join(str(s) for s in config["cams"]["scales"]),
        batch_size=config["cams"]["batch_size"],
        amp=config["cams"]["amp"],
        work="work/{experiment}/cams/shard_{shard}",  # finished maps survive a killed job (moved in at the end)
        gpu_slot=gpu_slot,
        # each stage's map too only where the part scores read it (the synthetic benchmark): on VOC/COCO it would
        # double the disk the maps take
        stages="--save-stages " if has_parts() else "",
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/rs_cams_{shard}.log",
    benchmark:
        "logs/{experiment}/rs_cams_{shard}.benchmark.tsv"
    threads: stage_threads("cams")
    resources:
        mem_mb=8000,
        runtime=runtime_of("maps"),
        gpu=GPU_PER_JOB,
    shell:
        "OMP_NUM_THREADS={threads} {params.gpu_slot}python -m rpc cams --model {input.model:q} --dataset {input.dataset:q}"
        " --split {params.split:q} --out {output:q} --shard {wildcards.shard} --num-shards {params.shards:q}"
        " --scales {params.scales} --batch-size {params.batch_size:q} --amp {params.amp:q} {params.stages}--workers auto --work {params.work:q} > {log:q} 2>&1"


# Another method's maps (config `imported_maps`), converted into this project's format in the same shards, so the
# CRF, DeepLab, the scores and the figures run on them unchanged. Every map is checked against its image.
rule import_maps:
    input:
        dataset=DATASET,
        src=lambda wc: IMPORTED[wc.experiment]["path"],
    output:
        directory("results/{experiment}/cams/shard_{shard}"),
    wildcard_constraints:
        experiment=one_of(IMPORTED),
    params:
        # the source files' identities (name, size, times, inode): a map replaced in place, even by an older file
        # (`cp -p`), reruns the import and what follows; the folder's own time does not change then
        sources=lambda wc: source_manifest(IMPORTED[wc.experiment]["path"]),
        format=lambda wc: IMPORTED[wc.experiment]["format"],
        bg=lambda wc: f"--bg-threshold {float(IMPORTED[wc.experiment]['bg_threshold'])}"
        if "bg_threshold" in IMPORTED[wc.experiment]
        else "",
        split=SPLITS["train"],
        shards=config["cams"]["shards"],
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/import_maps_{shard}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "python -m rpc import-maps --src {input.src:q} --out {output:q} --format {params.format:q} {params.bg}"
        " --dataset {input.dataset:q} --split {params.split:q} --shard {wildcards.shard} --num-shards {params.shards:q}"
        " > {log:q} 2>&1"
