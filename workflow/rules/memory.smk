rule memory:
    output:
        "results/memory/{name}.json",
    log:
        "results/logs/memory/{name}.log",
    benchmark:
        "results/benchmarks/memory/{name}.tsv"
    conda:
        "../../envs/onebit.yaml"
    threads: config["threads_per_job"]
    params:
        onebit=ONEBIT,
        args=memory_args,
        device=config["memory_device"],
    shell:
        "OMP_NUM_THREADS={threads} {params.onebit} memory {params.args} --method all"
        " --device {params.device} --output {output} 2> {log}"
