import os
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from onebit.grid import GridError, jobs, load_grid, train_args
from onebit.plugins import load_plugins

validate(config, "../schemas/config.schema.yaml")

if config["grid"] not in config["grids"]:
    raise WorkflowError(
        f"unknown grid {config['grid']!r}; known grids: {', '.join(config['grids'])}"
    )
PLUGINS = ",".join(config["plugins"])
try:
    load_plugins(PLUGINS)
    GRID = load_grid(config["grids"][config["grid"]])
except (GridError, ValueError) as e:
    raise WorkflowError(str(e)) from None
for _, _row in GRID.iterrows():
    validate(_row.to_dict(), "../schemas/grid.schema.yaml")

# every onebit command sees the same plugins; python of this environment
ONEBIT = (
    f"ONEBIT_PLUGINS={shlex.quote(PLUGINS)} {shlex.quote(sys.executable)} -m onebit.cli"
)
RUN_DIR = "results/runs/{row}/seed{seed}"
RUNS = [f"results/runs/{r}/seed{s}/final.json" for r, s in jobs(GRID)]
MEMORY = config["memory"].get(config["grid"], {})
FIGURES = [
    "error_curves",
    "error_vs_paper",
    "gap_vs_baseline",
    "memory_per_method",
    "gradient_fidelity",
]
# a grid without a fidelity entry gets an empty fidelity table
FIDELITY = config["fidelity"].get(config["grid"])
if FIDELITY and FIDELITY["row"] not in GRID.index:
    raise WorkflowError(
        f"fidelity: row {FIDELITY['row']!r} is not in grid {config['grid']!r}"
    )


def fidelity_inputs(wc):
    if not FIDELITY:
        return {}
    row, seed = FIDELITY["row"], FIDELITY["seed"]
    return {
        "final": f"results/runs/{row}/seed{seed}/final.json",
        "data": f"results/data/{GRID.loc[row, 'dataset']}.json",
    }


def fidelity_command():
    if not FIDELITY:
        return "echo '[]' > {output} 2> {log}"
    row = FIDELITY["row"]
    return (
        "OMP_NUM_THREADS={threads} {params.onebit} fidelity"
        f" --checkpoint results/runs/{row}/seed{FIDELITY['seed']}/checkpoint.pt"
        f" --dataset {GRID.loc[row, 'dataset']} --data-root {config['data_root']}"
        f" --batch-size {FIDELITY['batch_size']} --draws {FIDELITY['draws']}"
        " --output {output} 2> {log}"
    )


def grid_value(column):
    return lambda wc: GRID.loc[wc.row, column]


def memory_args(wc):
    spec = MEMORY[wc.name]
    args = [f"--{k.replace('_', '-')} {v}" for k, v in spec.items()]
    return " ".join(args)
