# Gradient fidelity: approximate weight gradients against exact backprop, on the
# trained network of one fp32 run of the grid (its checkpoint) and a test batch.
# A grid without a fidelity entry gets an empty table.
rule fidelity:
    input:
        unpack(fidelity_inputs),
    output:
        f"{RES}/fidelity/gradients.json",
    log:
        f"{RES}/logs/fidelity.log",
    benchmark:
        f"{RES}/benchmarks/fidelity.tsv"
    conda:
        "../../envs/onebit.yaml"
    threads: config["threads_per_job"]
    resources:
        slurm_partition=partition_resource(lambda wc: 0),
        slurm_extra=lambda wc: onebit.slurm.extra(SLURM["extra"]),
    params:
        args=fidelity_args,
    shell:
        FIDELITY_SHELL


rule collect_fidelity:
    input:
        f"{RES}/fidelity/gradients.json",
    output:
        csv=f"{RES}/fidelity.csv",
        parquet=f"{RES}/fidelity.parquet",
    log:
        f"{RES}/logs/collect_fidelity.log",
    conda:
        "../../envs/onebit.yaml"
    script:
        "../scripts/collect_fidelity.py"
