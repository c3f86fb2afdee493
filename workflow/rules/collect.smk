rule collect:
    input:
        runs=RUNS,
        grid=config["grids"][config["grid"]],
        published=config["published"],
    output:
        metrics_csv="results/metrics.csv",
        metrics_parquet="results/metrics.parquet",
        summary_csv="results/summary.csv",
        summary_parquet="results/summary.parquet",
        gaps_csv="results/gaps.csv",
        paper_gaps_csv="results/paper_gaps.csv",
    log:
        "results/logs/collect.log",
    conda:
        "../../envs/onebit.yaml"
    params:
        plugins=PLUGINS,
    script:
        "../scripts/collect.py"


rule collect_memory:
    input:
        expand("results/memory/{name}.json", name=MEMORY),
    output:
        csv="results/memory.csv",
        parquet="results/memory.parquet",
    log:
        "results/logs/collect_memory.log",
    conda:
        "../../envs/onebit.yaml"
    script:
        "../scripts/collect_memory.py"
