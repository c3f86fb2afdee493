# Gradient fidelity: approximate weight gradients against exact backprop, on the
# trained network of one fp32 run of the grid (its checkpoint) and a test batch.
rule fidelity:
    input:
        unpack(fidelity_inputs),
    output:
        "results/fidelity/gradients.json",
    log:
        "results/logs/fidelity.log",
    benchmark:
        "results/benchmarks/fidelity.tsv"
    conda:
        "../../envs/onebit.yaml"
    threads: config["threads_per_job"]
    params:
        onebit=ONEBIT,
    shell:
        fidelity_command()


rule collect_fidelity:
    input:
        "results/fidelity/gradients.json",
    output:
        csv="results/fidelity.csv",
        parquet="results/fidelity.parquet",
    log:
        "results/logs/collect_fidelity.log",
    conda:
        "../../envs/onebit.yaml"
    script:
        "../scripts/collect_fidelity.py"
