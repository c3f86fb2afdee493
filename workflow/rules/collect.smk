# Tidy tables of the grid's runs and measurements (pure pandas: no plugin, no model).
rule collect:
    input:
        runs=RUNS,
        grid=GRID_PATH,
        published=PUBLISHED,
    output:
        metrics_csv=f"{RES}/metrics.csv",
        metrics_parquet=f"{RES}/metrics.parquet",
        summary_csv=f"{RES}/summary.csv",
        summary_parquet=f"{RES}/summary.parquet",
        gaps_csv=f"{RES}/gaps.csv",
        paper_gaps_csv=f"{RES}/paper_gaps.csv",
    log:
        f"{RES}/logs/collect.log",
    conda:
        "../../envs/onebit.yaml"
    script:
        "../scripts/collect.py"


rule collect_memory:
    input:
        expand(f"{RES}/memory/{{name}}.json", name=MEMORY),
    output:
        csv=f"{RES}/memory.csv",
        parquet=f"{RES}/memory.parquet",
    log:
        f"{RES}/logs/collect_memory.log",
    conda:
        "../../envs/onebit.yaml"
    script:
        "../scripts/collect_memory.py"
