# onebit: every row of the paper's tables -> tidy results -> figures -> report.
#   snakemake --cores all                      # default grid "quick" (Fashion-MNIST, CPU)
#   snakemake --cores all --config grid=paper  # CIFAR-10/100 and ImageNet, on GPUs
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/memory.smk"
include: "workflow/rules/fidelity.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "reports/report.html",
