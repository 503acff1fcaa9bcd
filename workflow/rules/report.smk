# Figures and summaries; `snakemake --report report.html` collects the outputs marked with report().
rule figures_maps:
    input:
        dataset=DATASET,
        cams=cam_shards,
        masks="results/{experiment}/pseudo_masks/merged",
    output:
        report(
            directory("results/{experiment}/figures/maps"),
            patterns=["{name}.png"],
            caption="../report/maps.rst",
            category="Maps and pseudo masks",
            subcategory="{experiment}",
        ),
    params:
        split=SPLITS["local_maps"],
        images=config["figures"]["count"],
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/figures_maps.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python -m rpc figures --dataset {input.dataset:q} --split {params.split:q} --count {params.images:q}"
        " --cams {input.cams:q} --masks 'pseudo mask={input.masks:q}' --out {output:q} > {log:q} 2>&1"


rule figures_predictions:
    wildcard_constraints:
        experiment=NOT_UPPER_BOUND_RUN,  # the upper bound: upper_bound.smk
    input:
        dataset=DATASET,
        pred="results/{experiment}/segmentation/pred",
        crf="results/{experiment}/segmentation/pred_crf",
    output:
        report(
            directory("results/{experiment}/figures/predictions"),
            patterns=["{name}.png"],
            caption="../report/predictions.rst",
            category="DeepLab predictions",
            subcategory="{experiment}",
        ),
    params:
        split=SPLITS["val"],
        images=config["figures"]["count"],
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/figures_predictions.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python -m rpc figures --dataset {input.dataset:q} --split {params.split:q} --count {params.images:q}"
        " --masks 'DeepLab={input.pred:q}' 'DeepLab + CRF={input.crf:q}' --out {output:q} > {log:q} 2>&1"


rule experiment_summary:
    wildcard_constraints:
        experiment=NOT_UPPER_BOUND_RUN,  # the upper bound: upper_bound.smk
    input:
        lambda wc: experiment_results(wc.experiment),
    output:
        md="results/{experiment}/summary.md",
        # the report shows HTML and images (a Markdown item is only a download button)
        html=report("results/{experiment}/summary.html", caption="../report/run_summary.rst", category="Summary",
                    subcategory="Each run"),
        json="results/{experiment}/summary.json",
    params:
        kind=KIND,
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/{experiment}/summary.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "python -m rpc summary --runs {wildcards.experiment} --results results --inputs {input:q}"
        " --dataset-kind {params.kind:q}"
        " --md {output.md:q} --json {output.json:q} > {log:q} 2>&1"
        " && python -m rpc report-pages --md {output.md:q}={output.html:q} >> {log:q} 2>&1"


rule summary:
    input:
        dataset=DATASET,
        results=[f for e in SEG_RUNS for f in experiment_results(e)],
    output:
        md=report("results/summary.md", caption="../report/summary.rst", category="Summary",
                  subcategory="All runs"),
        json="results/summary.json",
        plot=report("results/parts.png", caption="../report/parts.rst", category="Summary", subcategory="All runs")
        if has_parts()
        else [],
    params:
        # each experiment with its own seeds (an experiment may list its own `seeds`)
        experiments=[
            f"{e}=" + ",".join(str(s) for s in config["experiments"][e].get("seeds", SEEDS)) for e in EXPERIMENTS
        ]
        + ([f"{UPPER_BOUND}=" + ",".join(map(str, SEEDS))] if UPPER_BOUND_RUNS else []),
        # runs without seeds: the imported maps
        extra=("--extra " + " ".join(map(shell_quote, UNSEEDED_RUNS))) if UNSEEDED_RUNS else "",
        kind=KIND,
        plot=lambda wc, output: f"--plot {shell_quote(output.plot)}" if has_parts() else "",
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/summary.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "python -m rpc summary --experiments {params.experiments:q} {params.extra}"
        " --results results --inputs {input.results:q} --dataset {input.dataset:q} --dataset-kind {params.kind:q}"
        " --md {output.md:q} --json {output.json:q} {params.plot} > {log:q} 2>&1"


rule ablation_tables:
    input:
        spec=config["ablations"],
        maps=expand(rules.eval_cams.output.json, experiment=list(ABLATION_RUNS)),
    output:
        md="results/ablations.md",
        html=report("results/ablations.html", caption="../report/ablations.rst", category="Ablations",
                    subcategory="All cells"),
        json="results/ablations.json",
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/ablation_tables.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "python -m rpc ablation-tables --spec {input.spec:q} --results results --inputs {input.maps:q}"
        " --md {output.md:q} --json {output.json:q} > {log:q} 2>&1"
        " && python -m rpc report-pages --md {output.md:q}={output.html:q} >> {log:q} 2>&1"


rule report_pages:
    input:
        md="results/summary.md",
        logs=expand(rules.train_classifier.output.log, experiment=RUN_NAMES),
        seg_logs=expand(rules.train_segmentation.output.log, experiment=SEG_RUNS),
        maps=expand(rules.eval_cams.output.json, experiment=MAP_RUNS),
        seg=expand(rules.eval_segmentation.output.raw, experiment=SEG_RUNS),
        pretrain=PRETRAIN_REPORT if uses_pretrained() else [],
    output:
        html=report("results/summary.html", caption="../report/summary.rst", category="Summary",
                    subcategory="All runs"),
        curves=report("results/curves.png", caption="../report/curves.rst", category="Training",
                      subcategory="All runs"),
        local_maps=report("results/local_maps.png", caption="../report/local_maps.rst", category="Summary",
                          subcategory="All runs"),
        segmentation=report("results/segmentation.png", caption="../report/segmentation.rst",
                            category="DeepLab predictions", subcategory="All runs"),
    params:
        runs=MAP_RUNS + UPPER_BOUND_RUNS,
    conda:
        "../../envs/rpc.yaml"
    log:
        "logs/report_pages.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "python -m rpc report-pages --results results --runs {params.runs:q} --md {input.md:q}={output.html:q}"
        " --curves {output.curves:q} --local-maps {output.local_maps:q} --segmentation {output.segmentation:q}"
        " > {log:q} 2>&1"
