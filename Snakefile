# onebit: every row of the papers' tables -> tidy results -> figures -> report.
#   snakemake --cores all                      # default grid "quick" (Fashion-MNIST, CPU)
#   snakemake --cores all --config grid=fashion                    # all of Fashion-MNIST, ~1 h
#   snakemake --cores all --resources gpu=1 --config grid=paper   # CIFAR-10/100, ImageNet
#   snakemake --profile profiles/slurm --config grid=paper         # on a SLURM cluster
# Everything a grid produces lives under results/<grid>/ and reports/<grid>/
# (config/README.md describes every setting and grid column).
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


# cheap steps, and the download (compute nodes of a cluster often have no network),
# run where Snakemake runs, not as cluster jobs
localrules:
    all,
    data,
    collect,
    collect_memory,
    collect_fidelity,
    figures,
    report,


rule all:
    input:
        REPORT,


onstart:
    check_gpu_limit()
    check_slurm_account()


onsuccess:
    if os.path.exists(REPORT):
        print(
            f"onebit: the report of grid {GRID_NAME!r} is {REPORT}", file=sys.stderr
        )
