# The report: the notebook executed on the grid's tidy tables (papermill injects its
# parameters), rendered to HTML without the code.
rule report:
    input:
        notebook=NOTEBOOK,
        summary=f"{RES}/summary.parquet",
        metrics=f"{RES}/metrics.parquet",
        gaps=f"{RES}/gaps.csv",
        paper_gaps=f"{RES}/paper_gaps.csv",
        memory=f"{RES}/memory.parquet",
        fidelity=f"{RES}/fidelity.parquet",
        published=PUBLISHED,
        claims=CHECKED.claims,
        figures=expand(f"{RES}/figures/{{name}}.png", name=FIGURES),
    output:
        html=REPORT,
        notebook=f"{RES}/report.ipynb",
    log:
        f"{RES}/logs/report.log",
    conda:
        "../../envs/onebit.yaml"
    params:
        grid=GRID_NAME,
        results=lambda wc, input: os.path.dirname(input.summary),
        outdir=lambda wc, output: os.path.dirname(output.html),
    shell:
        "(onebit_py -m papermill --no-progress-bar {input.notebook:q} {output.notebook:q}"
        ' -p grid {params.grid:q} -p root "$PWD" -p results "$PWD"/{params.results:q} -p published {input.published:q}'
        " && onebit_py -m jupyter nbconvert --to html --no-input {output.notebook:q}"
        " --output-dir {params.outdir:q} --output report.html) > {log:q} 2>&1"
