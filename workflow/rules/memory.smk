# Memory of every registered method on one network and batch (onebit memory).
rule memory:
    output:
        f"{RES}/memory/{{name}}.json",
    log:
        f"{RES}/logs/memory/{{name}}.log",
    benchmark:
        f"{RES}/benchmarks/memory/{{name}}.tsv"
    conda:
        "../../envs/onebit.yaml"
    threads: config["threads_per_job"]
    resources:
        mem_mb=memory_mb,
        gpu=gpu_resource(memory_gpus),
        gres=gres_resource(memory_gpus),
        slurm_partition=partition_resource(memory_gpus),
        slurm_extra=lambda wc: onebit.slurm.extra(SLURM["extra"]),
    params:
        args=memory_args,
        device=memory_device,
    shell:
        "OMP_NUM_THREADS={threads} onebit memory {params.args:q} --method all"
        " --device {params.device:q} --output {output:q} 2> {log:q}"
