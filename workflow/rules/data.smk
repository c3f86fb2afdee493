rule data:
    output:
        "results/data/{dataset}.json",
    log:
        "results/logs/data/{dataset}.log",
    conda:
        "../../envs/onebit.yaml"
    params:
        onebit=ONEBIT,
        root=config["data_root"],
    shell:
        "{params.onebit} data --dataset {wildcards.dataset} --data-root {params.root}"
        " --output {output} 2> {log}"
