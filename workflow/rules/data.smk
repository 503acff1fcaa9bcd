# Dataset preparation: one rule, chosen by dataset.kind, writes the prepared description every stage reads.
if KIND == "synthetic":

    rule prepare_dataset:
        output:
            raw=directory("results/data/raw"),
            prepared=directory(DATASET),
        params:
            synthetic=config["dataset"]["synthetic"],
            record=json.dumps(dataset_identity(), sort_keys=True),
        conda:
            "../../envs/rpc.yaml"
        log:
            "logs/data/prepare.log",
        benchmark:
            "logs/data/prepare.benchmark.tsv"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=30,
        shell:
            "python -m rpc synth --generator {params.synthetic[generator]} --out {output.raw:q} --prepared {output.prepared:q}"
            " --size {params.synthetic[size]} --n-train {params.synthetic[n_train]}"
            " --n-train-eval {params.synthetic[n_train_eval]} --n-val {params.synthetic[n_val]}"
            " --seed {params.synthetic[seed]} > {log:q} 2>&1"
            " && echo {params.record:q} > {output.prepared:q}/workflow_dataset.json"

elif KIND == "voc":

    rule prepare_dataset:
        output:
            directory(DATASET),
        params:
            root=dataset_root(),
            splits=list(dict.fromkeys(SPLITS.values())),
            scored=list(dict.fromkeys([SPLITS["local_maps"], SPLITS["val"]])),  # every image needs its mask
            labels_from=config["dataset"]["labels_from"],
            record=json.dumps(dataset_identity(), sort_keys=True),
        conda:
            "../../envs/rpc.yaml"
        log:
            "logs/data/prepare.log",
        benchmark:
            "logs/data/prepare.benchmark.tsv"
        threads: config["dataset"]["prepare_workers"]
        resources:
            mem_mb=4000,
            runtime=60,
        shell:
            "python -m rpc prepare-voc --root {params.root:q} --out {output:q} --splits {params.splits:q}"
            " --masks-for {params.scored:q} --labels-from {params.labels_from} --workers {threads} > {log:q} 2>&1"
            " && echo {params.record:q} > {output:q}/workflow_dataset.json"

else:

    rule prepare_dataset:
        output:
            directory(DATASET),
        params:
            root=dataset_root(),
            work="work/data/prepare",  # finished masks survive a killed job
            record=json.dumps(dataset_identity(), sort_keys=True),
        conda:
            "../../envs/rpc.yaml"
        log:
            "logs/data/prepare.log",
        benchmark:
            "logs/data/prepare.benchmark.tsv"
        threads: config["dataset"]["prepare_workers"]
        resources:
            mem_mb=16000,
            runtime=240,
        shell:
            "python -m rpc prepare-coco --root {params.root:q} --out {output:q}"
            " --workers {threads} --work {params.work:q} > {log:q} 2>&1"
            " && echo {params.record:q} > {output:q}/workflow_dataset.json"
