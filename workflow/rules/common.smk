import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

from onebit.grid import GridError, check_networks, check_workflow, jobs, train_args
from onebit.report import FIGURES
import onebit.data.staging
import onebit.errors
import onebit.slurm

validate(config, "../schemas/config.schema.yaml")
try:
    onebit.data.staging.check_setting(config.get("stage_data", ""), "config stage_data")
except onebit.errors.UserError as e:
    raise WorkflowError(str(e)) from None

# The repository the workflow lives in: its own files (the notebook, the package's src/, the
# default grids) are found from there, so that it also runs from elsewhere as a module.
ROOT = Path(workflow.current_basedir).parents[1]
GRID_NAME = config["grid"]
# every onebit command of this run sees the same plugins (through the shell prefix
# below: not a rule parameter, so adding a plugin changes no job's parameters)
PLUGINS = ",".join(config["plugins"])
# The grid and every setting that reaches a job, checked before any job. Building each row's
# network (on the meta device) imports PyTorch: done when the scheduling process builds the
# job graph (checked_before_jobs, from the train rule's input; dry runs and module use
# included), so that the parse each job and each cluster job pays stays light.
try:
    CHECKED = check_workflow(config, GRID_NAME, ROOT, build=False)
except (GridError, ValueError) as e:
    raise WorkflowError(str(e)) from None
GRID, GRID_PATH, PUBLISHED = CHECKED.grid, CHECKED.grid_path, CHECKED.published
MEMORY, FIDELITY = CHECKED.memory, CHECKED.fidelity
for _, _row in GRID.iterrows():
    validate(_row.to_dict(), "../schemas/grid.schema.yaml")

# Shell lines call `onebit ...` (and `onebit_launch NODES N ...` for a job of NODES x N
# processes, python -m onebit.launch: torchrun, under srun across a cluster's nodes),
# the commands a user runs, defined once here with the python of this environment
# (`onebit_py`): a change of that python, or of the plugins, changes no job's parameters.
# Under --sdm conda the python is that of envs/onebit.yaml, with the package from src/.
# (the prefix is formatted like a shell line: literal braces are doubled)
SRC = ROOT / "src"
if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    ONEBIT_PY = (
        f'PYTHONPATH={shlex.quote(str(SRC))}"${{{{PYTHONPATH:+:$PYTHONPATH}}}}" python'
    )
else:
    ONEBIT_PY = shlex.quote(sys.executable)
# The data folder, its node-local stage (expanded where the job runs) and the training
# device are runtime settings: through the environment
# too, so that changing them re-runs no finished job.
shell.prefix(
    f"export ONEBIT_PLUGINS={shlex.quote(PLUGINS)}; "
    f"export ONEBIT_DATA_ROOT={shlex.quote(config['data_root'])}; "
    f"export ONEBIT_STAGE_DATA={shlex.quote(config.get('stage_data', ''))}; "
    f"export ONEBIT_DEVICE={shlex.quote(config['device'])}; "
    f'onebit_py() {{{{ {ONEBIT_PY} "$@"; }}}}; '
    'onebit() {{ onebit_py -m onebit.cli "$@"; }}; '
    'onebit_launch() {{ nodes=$1; n=$2; shift 2; onebit_py -m onebit.launch --nodes "$nodes"'
    ' --nproc-per-node "$n" -m onebit.cli "$@"; }}; '
)
RES = f"results/{GRID_NAME}"
REPORT = f"reports/{GRID_NAME}/report.html"
RUNS = [f"{RES}/runs/{r}/seed{s}/final.json" for r, s in jobs(GRID)]
NOTEBOOK = str(ROOT / "workflow/notebooks/report.ipynb")


def grid_value(column):
    return lambda wc: GRID.loc[wc.row, column]


# SLURM (config `slurm`): GPUs asked for as a typed GRES, a partition for jobs without GPUs,
# a cap on a job's time limit with resubmissions, the stop signal and extra sbatch flags.
SLURM = {
    "cpu_partition": "",
    "gres": "",
    "max_runtime": 0,
    "signal_seconds": 300,
    "extra": "",
    **config.get("slurm", {}),
}
SLURM["max_runtime"] = int(SLURM["max_runtime"])
SLURM["signal_seconds"] = int(SLURM["signal_seconds"])
if SLURM["signal_seconds"] > 65535:
    raise WorkflowError(
        f"config slurm.signal_seconds: at most 65535 (SLURM's limit), got {SLURM['signal_seconds']}"
    )
try:
    SLURM["extra"] = onebit.slurm.check_extra(SLURM["extra"], "config slurm.extra")
except onebit.errors.UserError as e:
    raise WorkflowError(str(e)) from None


def row_gpus(wc):
    return int(GRID.loc[wc.row, "gpus"])


def row_nodes(wc):
    return int(GRID.loc[wc.row, "nodes"]) if hasattr(wc, "row") else 1


def across_nodes(wc):
    """A row of several nodes (SLURM only): one torchrun per node, started by srun inside
    the job (the plugin's `mpi` path: the job's shell line runs srun itself)."""
    return row_nodes(wc) > 1


def node_flags(wc):
    """sbatch flags of a job across nodes: one task (torchrun) per node, and the row's GPUs
    per node (--gpus-per-node=[type:]N: the type of the row's gpu_model or of slurm.gres),
    instead of the plugin's GPU flags, which count the job's GPUs (and --gres, which the
    plugin reserves for itself)."""
    if not across_nodes(wc):
        return ""
    n = row_gpus(wc)
    kind = row_gpu_model(wc) or SLURM["gres"].partition(":")[2]
    per_node = f"--gpus-per-node={kind + ':' if kind else ''}{n}" if n else ""
    return onebit.slurm.extra("--ntasks-per-node=1", per_node)


def row_gpu_model(wc):
    """The row's GPU model (--gpus=<model>:N), where the grid names one."""
    return GRID.loc[wc.row, "gpu_model"] if hasattr(wc, "row") else None


def gpu_resource(gpus):
    """Snakemake's gpu resource (--gpus=N on SLURM, the local GPU limit); 0 on a cluster that is asked through a typed GRES instead (unless the row names
    its GPU model), and for a job across nodes (GPUs per node: node_flags)."""
    return lambda wc: (
        0
        if (SLURM["gres"] and not row_gpu_model(wc) and not workflow.local_exec)
        or across_nodes(wc)
        else gpus(wc)
    )


def gres_resource(gpus):
    """--gres=<slurm.gres>:N for a job of N GPUs, where the cluster asks for typed GRES."""
    return lambda wc: (
        f"{SLURM['gres']}:{gpus(wc)}"
        if SLURM["gres"] and gpus(wc) and not row_gpu_model(wc) and not across_nodes(wc)
        else ""
    )


def row_resource(column):
    """A row's SLURM setting (gpu_model, constraint, qos); None, no resource, if empty."""
    return lambda wc: GRID.loc[wc.row, column] or None


def nodes_resource(value):
    """A resource of jobs across nodes only (nodes, mpi, tasks); None, no resource, else."""
    return lambda wc: (
        (value(wc) if callable(value) else value) if across_nodes(wc) else None
    )


def runtime_resource(wc):
    """The row's runtime, at most slurm.max_runtime: a longer row is resubmitted (retries)
    and continues from its checkpoint until done."""
    return onebit.slurm.runtime(int(GRID.loc[wc.row, "runtime"]), SLURM["max_runtime"])


def train_extra(wc):
    """slurm_extra of a training job: the stop signal before its limit (where max_runtime
    gives the jobs retries; at most half the limit), config slurm.extra, the row's slurm_extra.
    """
    seconds = (
        min(SLURM["signal_seconds"], runtime_resource(wc) * 30)
        if SLURM["max_runtime"]
        else 0
    )
    return onebit.slurm.extra(
        onebit.slurm.signal_flag(seconds),
        node_flags(wc),
        SLURM["extra"],
        GRID.loc[wc.row, "slurm_extra"],
    )


# with slurm.max_runtime, a training job's retries: the jobs the longest row needs (one
# spare: a row that fits can still be stopped by the signal near its limit). Without it,
# no signal and the profile's or command line's --retries (None). Only the
# scheduling process resubmits: inside a cluster job (remote mode) Snakemake must not run
# the stopped command again within the same, nearly spent, time limit.
TRAIN_RETRIES = (
    None
    if workflow.remote_exec
    else (
        max(
            [getattr(workflow.execution_settings, "retries", 0) or 0]
            + [
                onebit.slurm.attempts(
                    int(m), SLURM["max_runtime"], SLURM["signal_seconds"]
                )
                for m in GRID["runtime"]
            ]
        )
        if SLURM["max_runtime"]
        else None
    )
)


def default_resource(name):
    """A default resource of the profile as written ("" where it sets none)."""
    defaults = workflow.resource_settings.default_resources
    if not hasattr(defaults, "get") or defaults.get(name) is None:
        return ""
    return str(getattr(defaults.get(name), "raw", "") or "").strip("'\"")


def partition_resource(gpus):
    """Jobs without GPUs go to slurm.cpu_partition where one is named; the others to the
    profile's slurm_partition ("" leaves the choice to SLURM's default partition)."""
    return lambda wc: (
        SLURM["cpu_partition"]
        if SLURM["cpu_partition"] and not gpus(wc)
        else default_resource("slurm_partition")
    )


def launcher(wc):
    """torchrun with one process per GPU (per node) for a row of several GPUs or nodes."""
    n, nodes = row_gpus(wc), row_nodes(wc)
    return f"onebit_launch {nodes} {max(1, n)}" if n > 1 or nodes > 1 else "onebit"


def threads_per_process(wc, threads):
    """A job's CPU threads (per node) shared among the processes that run there (one per
    GPU under torchrun)."""
    return max(1, threads // max(1, row_gpus(wc)))


def memory_args(wc):
    spec = {k: v for k, v in MEMORY[wc.name].items() if k not in ("mem_mb", "device")}
    return [a for k, v in spec.items() for a in (f"--{k.replace('_', '-')}", str(v))]


def memory_device(wc):
    return MEMORY[wc.name].get("device", config["memory_device"])


def memory_gpus(wc):
    return 1 if memory_device(wc).startswith("cuda") else 0


def memory_mb(wc):
    from onebit.measure.memory import job_memory_mb  # builds the network: PyTorch

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
    if not workflow.local_exec and "my_account" in default_resource("slurm_account"):
        raise WorkflowError(
            "profiles/slurm/config.yaml still names the placeholder account my_account: set "
            "slurm_account to yours (sacctmgr show associations user=$USER), or delete that line"
        )


def check_nodes_local():
    """A row of several nodes runs on a SLURM cluster only."""
    rows = GRID[GRID["nodes"] > 1]
    if workflow.local_exec and len(rows):
        raise WorkflowError(
            f"grid {GRID_NAME!r}: row {rows.index[0]!r} asks for {int(rows['nodes'].iloc[0])} nodes, which "
            "only a cluster gives (--profile profiles/slurm); on one machine, set its nodes to 1 and "
            "its gpus to all the GPUs it should use (the global batch stays the same)"
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


def check_networks_before_jobs():
    """The rest of the grid's check (each row's network built on the meta device), in the
    process that schedules the jobs, before any job."""
    try:
        check_networks(CHECKED, GRID_NAME)
    except (GridError, ValueError) as e:
        raise WorkflowError(str(e)) from None


_CHECKED_BEFORE_JOBS = []


def checked_before_jobs():
    """The checks that need the whole run (networks built; on a real run, the GPU limit and
    the SLURM account), once, in the scheduling process, while Snakemake builds the job
    graph: before any job, in a dry run too, and also where the workflow is used as a
    module (whose onstart handler is not used)."""
    if workflow.is_main_process and not _CHECKED_BEFORE_JOBS:
        check_networks_before_jobs()
        if not workflow.dryrun:
            check_gpu_limit()
            check_nodes_local()
            check_slurm_account()
        _CHECKED_BEFORE_JOBS.append(True)


def train_data(wc):
    checked_before_jobs()
    return f"{RES}/data/{GRID.loc[wc.row, 'dataset']}.json"
