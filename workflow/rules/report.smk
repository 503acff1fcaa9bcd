rule summary:
    input:
        expand("results/{experiment}/local_maps.json", experiment=EXPERIMENTS),
    output:
        md="results/summary.md",
        json="results/summary.json",
    params:
        experiments=EXPERIMENTS,
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/summary.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "python -m rpc summary --experiments {params.experiments} --local-maps {input}"
        " --md {output.md} --json {output.json} > {log} 2>&1"
