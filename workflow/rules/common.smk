import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

from onebit.grid import GridError, jobs, load_grid, train_args
import torch

from onebit.models import create_model
from onebit.measure.memory import job_memory_mb
from onebit.plugins import load_plugins

validate(config, "../schemas/config.schema.yaml")

GRID_NAME = config["grid"]
if GRID_NAME not in config["grids"]:
    raise WorkflowError(
        f"unknown grid {GRID_NAME!r}; known grids: {', '.join(config['grids'])}"
    )
# every onebit command of this run sees the same plugins (through the shell prefix
# below: not a rule parameter, so adding a plugin changes no job's parameters)
PLUGINS = ",".join(config["plugins"])
try:
    load_plugins(PLUGINS)
    GRID = load_grid(config["grids"][GRID_NAME])
except (GridError, ValueError) as e:
    raise WorkflowError(str(e)) from None
for _, _row in GRID.iterrows():
    validate(_row.to_dict(), "../schemas/grid.schema.yaml")

# Shell lines call `onebit ...` (and `onebit_torchrun N ...` for a job of N processes),
# the commands a user runs, defined once here with the python of this environment
# (`onebit_py`): a change of that python, or of the plugins, changes no job's parameters.
# Under --sdm conda the python is that of envs/onebit.yaml, with the package from src/.
# (the prefix is formatted like a shell line: literal braces are doubled)
SRC = Path(workflow.basedir, "src")
if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    ONEBIT_PY = (
        f'PYTHONPATH={shlex.quote(str(SRC))}"${{{{PYTHONPATH:+:$PYTHONPATH}}}}" python'
    )
else:
    ONEBIT_PY = shlex.quote(sys.executable)
# The data folder and the training device are runtime settings: through the environment
# too, so that changing them re-runs no finished job.
shell.prefix(
    f"export ONEBIT_PLUGINS={shlex.quote(PLUGINS)}; "
    f"export ONEBIT_DATA_ROOT={shlex.quote(config['data_root'])}; "
    f"export ONEBIT_DEVICE={shlex.quote(config['device'])}; "
    f'onebit_py() {{{{ {ONEBIT_PY} "$@"; }}}}; '
    'onebit() {{ onebit_py -m onebit.cli "$@"; }}; '
    "onebit_torchrun() {{ n=$1; shift; onebit_py -m torch.distributed.run --standalone"
    ' --nproc-per-node="$n" -m onebit.cli "$@"; }}; '
)
RES = f"results/{GRID_NAME}"
REPORT = f"reports/{GRID_NAME}/report.html"
RUNS = [f"{RES}/runs/{r}/seed{s}/final.json" for r, s in jobs(GRID)]
MEMORY = config["memory"].get(GRID_NAME, {})
FIGURES = [
    "error_curves",
    "error_vs_paper",
    "gap_vs_baseline",
    "memory_per_method",
    "gradient_fidelity",
]
for _name, _spec in MEMORY.items():
    try:  # what reaches the memory job's command line is checked here, before any job
        if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", _spec.get("device", "cpu")):
            raise ValueError(
                f"device must be auto, cpu, cuda or cuda:N, got {_spec['device']!r}"
            )
        _kw = {k: _spec[k] for k in ("depth", "width") if k in _spec}
        with torch.device("meta"):  # the network is built as the job will build it
            create_model(
                _spec["arch"], "fp32", in_channels=_spec.get("in_channels", 3), **_kw
            )
    except (KeyError, ValueError, TypeError) as e:
        raise WorkflowError(f"memory.{GRID_NAME}.{_name}: {e}") from None
for _row, _name in GRID["memory"].dropna().items():
    if _name not in MEMORY:
        raise WorkflowError(
            f"grid {GRID_NAME!r}, row {_row!r}, field 'memory': {_name!r} is not a memory "
            f"measurement of this grid (config memory.{GRID_NAME}: {', '.join(MEMORY) or 'none'})"
        )
# a grid without a fidelity entry gets an empty fidelity table
FIDELITY = config["fidelity"].get(GRID_NAME)
if FIDELITY and FIDELITY["row"] not in GRID.index:
    raise WorkflowError(
        f"fidelity: row {FIDELITY['row']!r} is not in grid {GRID_NAME!r}"
    )
if FIDELITY and FIDELITY["seed"] not in GRID.loc[FIDELITY["row"], "seeds"]:
    raise WorkflowError(
        f"fidelity: seed {FIDELITY['seed']} is not a seed of row {FIDELITY['row']!r} "
        f"(its seeds: {GRID.loc[FIDELITY['row'], 'seeds']})"
    )


def grid_value(column):
    return lambda wc: GRID.loc[wc.row, column]


def launcher(wc):
    """torchrun with one process per GPU for a row of several GPUs."""
    n = int(GRID.loc[wc.row, "gpus"])
    return f"onebit_torchrun {n}" if n > 1 else "onebit"


def memory_args(wc):
    spec = {k: v for k, v in MEMORY[wc.name].items() if k not in ("mem_mb", "device")}
    return [a for k, v in spec.items() for a in (f"--{k.replace('_', '-')}", str(v))]


def memory_device(wc):
    return MEMORY[wc.name].get("device", config["memory_device"])


def memory_gpus(wc):
    return 1 if memory_device(wc).startswith("cuda") else 0


def memory_mb(wc):
    return job_memory_mb(MEMORY[wc.name])


def fidelity_inputs(wc):
    if not FIDELITY:
        return {}
    row, seed = FIDELITY["row"], FIDELITY["seed"]
    return {
        "checkpoint": f"{RES}/runs/{row}/seed{seed}/final.json",
        "data": f"{RES}/data/{GRID.loc[row, 'dataset']}.json",
    }


def fidelity_args(wc):
    if not FIDELITY:
        return []
    row = FIDELITY["row"]
    return [
        "--checkpoint",
        f"{RES}/runs/{row}/seed{FIDELITY['seed']}/checkpoint.pt",
        "--dataset",
        GRID.loc[row, "dataset"],
        "--batch-size",
        str(FIDELITY["batch_size"]),
        "--draws",
        str(FIDELITY["draws"]),
    ]


FIDELITY_SHELL = (
    "OMP_NUM_THREADS={threads} onebit fidelity {params.args:q}"
    " --output {output:q} 2> {log:q}"
    if FIDELITY
    else "echo '[]' > {output:q} 2> {log:q}"
)


def check_slurm_account():
    """The SLURM profile's placeholder account, left unedited, is refused before any job."""
    defaults = workflow.resource_settings.default_resources or {}
    account = (
        getattr(defaults.get("slurm_account"), "raw", None)
        if hasattr(defaults, "get")
        else None
    )
    if not workflow.local_exec and account is not None and "my_account" in str(account):
        raise WorkflowError(
            "profiles/slurm/config.yaml still names the placeholder account my_account: set "
            "slurm_account to yours (sacctmgr show associations user=$USER), or delete that line"
        )


def check_gpu_limit():
    """Local runs of GPU rows need a limit on concurrent GPU jobs (--resources gpu=N)."""
    gpu_rows = GRID[GRID["gpus"] > 0]
    if (
        workflow.local_exec
        and len(gpu_rows)
        and config["device"] != "cpu"
        and "gpu" not in workflow.global_resources
    ):
        raise WorkflowError(
            f"grid {GRID_NAME!r} has {len(gpu_rows)} GPU rows; tell Snakemake how many GPUs this "
            "machine has, e.g. --resources gpu=1, so that it runs no more GPU jobs at once "
            "(on a cluster use --profile profiles/slurm)"
        )
