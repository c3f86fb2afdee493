rule figures:
    input:
        metrics=f"{RES}/metrics.parquet",
        summary=f"{RES}/summary.parquet",
        gaps=f"{RES}/gaps.csv",
        paper_gaps=f"{RES}/paper_gaps.csv",
        memory=f"{RES}/memory.parquet",
        fidelity=f"{RES}/fidelity.parquet",
    output:
        **{
            name: report(
                f"{RES}/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
            )
            for name in FIGURES
        },
    log:
        f"{RES}/logs/figures.log",
    conda:
        "../../envs/onebit.yaml"
    script:
        "../scripts/figures.py"
