# The report: a notebook executed on the tidy tables, rendered to HTML.
rule report:
    input:
        notebook="workflow/notebooks/report.ipynb",
        summary="results/summary.parquet",
        metrics="results/metrics.parquet",
        gaps="results/gaps.csv",
        paper_gaps="results/paper_gaps.csv",
        memory="results/memory.parquet",
        fidelity="results/fidelity.parquet",
        published=config["published"],
        figures=expand("results/figures/{name}.png", name=FIGURES),
    output:
        "reports/report.html",
    log:
        "results/logs/report.log",
    conda:
        "../../envs/onebit.yaml"
    params:
        grid=config["grid"],
        python=sys.executable,
    shell:
        "ONEBIT_REPORT_GRID={params.grid} ONEBIT_REPORT_ROOT=$PWD {params.python} -m jupyter nbconvert"
        " --to html --execute --no-input --ExecutePreprocessor.timeout=600"
        " --output-dir reports --output report.html {input.notebook} > {log} 2>&1"
