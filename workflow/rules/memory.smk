def memory_args(wc):
    spec = MEMORY[wc.name]
    args = [f"--{k.replace('_', '-')} {v}" for k, v in spec.items()]
    return " ".join(args)


rule memory:
    output:
        "results/memory/{name}.json",
    log:
        "results/logs/memory/{name}.log",
    benchmark:
        "results/benchmarks/memory/{name}.tsv"
    params:
        onebit=ONEBIT,
        args=memory_args,
        device=config["memory_device"],
    threads: config["threads_per_job"]
    shell:
        "OMP_NUM_THREADS={threads} {params.onebit} memory {params.args} --method all"
        " --device {params.device} --json > {output} 2> {log}"
