rule figures:
    input:
        metrics="results/metrics.parquet",
        summary="results/summary.parquet",
        gaps="results/gaps.csv",
        paper_gaps="results/paper_gaps.csv",
        memory="results/memory.parquet",
        fidelity="results/fidelity.parquet",
    output:
        **{
            name: report(
                f"results/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
            )
            for name in FIGURES
        },
    log:
        "results/logs/figures.log",
    conda:
        "../../envs/onebit.yaml"
    script:
        "../scripts/figures.py"
