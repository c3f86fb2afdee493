# One job per grid row and seed, calling the same command a user would run. (Snakemake
# clears the log before each attempt: a resubmitted job's log says where it resumed and
# what stopped the attempt before, from the checkpoint's record of stops.)
# Only final.json (written last, atomically) is declared: Snakemake removes
# declared outputs before re-running a job, and checkpoint.pt must survive so
# that a re-run (or a resubmitted cluster job) resumes after a killed one.
rule train:
    input:
        data=train_data,
    output:
        f"{RES}/runs/{{row}}/seed{{seed}}/final.json",
    log:
        f"{RES}/logs/train/{{row}}/seed{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/train/{{row}}/seed{{seed}}.tsv"
    # a row longer than slurm.max_runtime: its job exits at SIGUSR1 before the limit (exit
    # 75, checkpoint saved mid-epoch) and is submitted again until done
    retries: TRAIN_RETRIES
    conda:
        "../../envs/onebit.yaml"
    threads: lambda wc: int(GRID.loc[wc.row, "cpus"]) or config["threads_per_job"]
    resources:
        gpu=gpu_resource(row_gpus),
        gres=gres_resource(row_gpus),
        slurm_partition=partition_resource(row_gpus),
        gpu_model=lambda wc: None if across_nodes(wc) else row_resource("gpu_model")(wc),
        nodes=nodes_resource(row_nodes),
        mpi=nodes_resource("srun"),
        tasks=nodes_resource(row_nodes),
        constraint=row_resource("constraint"),
        qos=row_resource("qos"),
        slurm_extra=train_extra,
        mem_mb=grid_value("mem_mb"),
        runtime=runtime_resource,
    params:
        launcher=launcher,
        threads=threads_per_process,
        gpus=row_gpus,
        args=lambda wc: train_args(GRID.loc[wc.row], int(wc.seed)),
        out=lambda wc: f"{RES}/runs/{wc.row}/seed{wc.seed}",
    shell:
        "OMP_NUM_THREADS={params.threads} ONEBIT_GPUS={params.gpus} ONEBIT_ROW={wildcards.row:q}"
        " {params.launcher} train"
        " {params.args:q}"
        " --out {params.out:q} > {log:q} 2>&1"
