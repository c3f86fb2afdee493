# One job per grid row and seed, calling the same command a user would run.
# Only final.json (written last, atomically) is declared: Snakemake removes
# declared outputs before re-running a job, and checkpoint.pt must survive so
# that a re-run resumes after a killed job.
rule train:
    input:
        data=lambda wc: f"results/data/{GRID.loc[wc.row, 'dataset']}.json",
    output:
        "results/runs/{row}/seed{seed}/final.json",
    log:
        "results/logs/train/{row}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{row}/seed{seed}.tsv"
    conda:
        "../../envs/onebit.yaml"
    threads: config["threads_per_job"]
    resources:
        gpu=grid_value("gpu"),
        mem_mb=grid_value("mem_mb"),
        runtime=grid_value("runtime"),
    params:
        onebit=ONEBIT,
        args=lambda wc: shlex.join(train_args(GRID.loc[wc.row], int(wc.seed))),
        out=lambda wc: RUN_DIR.format(row=wc.row, seed=wc.seed),
        root=config["data_root"],
        device=config["device"],
    shell:
        "OMP_NUM_THREADS={threads} {params.onebit} train {params.args} --device {params.device}"
        " --data-root {params.root} --out {params.out} > {log} 2>&1"
