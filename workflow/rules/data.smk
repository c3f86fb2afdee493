# Download (where allowed) and verify a dataset. A local rule: it needs the network
# that compute nodes of a cluster often lack.
rule data:
    output:
        f"{RES}/data/{{dataset}}.json",
    log:
        f"{RES}/logs/data/{{dataset}}.log",
    conda:
        "../../envs/onebit.yaml"
    shell:
        "onebit data --dataset {wildcards.dataset:q}" " --output {output:q} 2> {log:q}"
