"""What the pipeline asks SLURM for, beyond the executor plugin's own resources: a time
limit capped at ``slurm.max_runtime`` with the resubmissions that finish a longer row,
the stop signal before the limit (:mod:`onebit.stopping`), and extra sbatch flags that
are checked before any job is submitted (standard library only)."""

from __future__ import annotations

import math
import re

from .errors import UserError

#: sbatch options the executor plugin or the pipeline sets itself: in extra flags they
#: would be refused by the plugin at submission, or silently fight the pipeline's value
MANAGED = {
    "job-name": "the plugin names jobs",
    "output": "the plugin keeps logs",
    "error": "the plugin keeps logs",
    "parsable": "the plugin reads sbatch's answer",
    "export": "the plugin sets the environment",
    "comment": "the plugin marks its jobs",
    "chdir": "the plugin sets the directory",
    "workdir": "the plugin sets the directory",
    "account": "set slurm_account in the profile",
    "partition": "set slurm_partition in the profile, or slurm.cpu_partition",
    "mem": "set the row's mem_mb",
    "mem-per-cpu": "set the row's mem_mb",
    "ntasks": "the plugin sets tasks",
    "cpus-per-task": "set the row's cpus",
    "time": "set the row's runtime (and slurm.max_runtime)",
    "constraint": "set the row's constraint column",
    "qos": "set the row's qos column",
    "gpus": "set the row's gpus (and gpu_model)",
    "gres": "set the row's gpus and slurm.gres",
    "gpus-per-node": "set the row's gpus (per node) and nodes",
    "gpus-per-task": "set the row's gpus (per node) and nodes",
    "nodes": "set the row's nodes",
    "ntasks-per-node": "set the row's nodes (one task per node)",
    "ntasks-per-gpu": "the plugin sets tasks",
    "tasks-per-node": "set the row's nodes (one task per node)",
    "mem-per-gpu": "set the row's mem_mb",
    "cpus-per-gpu": "set the row's cpus",
    "gpus-per-socket": "set the row's gpus",
    "tres-per-task": "set the row's gpus and cpus",
    "array": "each grid row and seed is one job of its own",
    "clusters": "the plugin follows its jobs on one cluster",
    "wrap": "the plugin submits the job's command",
    "signal": "set slurm.signal_seconds",
}
SHORT = {"J": "job-name", "o": "output", "e": "error", "D": "chdir", "A": "account", "p": "partition",
         "n": "ntasks", "N": "nodes", "M": "clusters", "a": "array",
         "c": "cpus-per-task", "t": "time", "C": "constraint", "G": "gpus"}  # fmt: skip
# flags as --name or --name=value with a plain value: the text reaches sbatch's command line
_FLAG = re.compile(r"--[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:@/%+=-]+)?|-[A-Za-z]( ?[A-Za-z0-9_.,:@/%+=-]+)?")


def check_extra(text: str, where: str) -> str:
    """``text`` as extra sbatch flags, or a UserError naming ``where`` and the flag."""
    text = " ".join(str(text).split())
    rest = text
    flags = []
    while rest:
        m = _FLAG.match(rest)
        if not m or (m.end() < len(rest) and rest[m.end()] != " "):
            raise UserError(
                f"{where}: {text!r} is not a list of sbatch flags (--name or --name=value, values of "
                "letters, digits and . , : @ / % + = - only: no quotes, spaces or shell characters)"
            )
        flags.append(m.group(0))
        rest = rest[m.end() :].lstrip()
    for flag in flags:
        name = flag[2:].split("=")[0] if flag.startswith("--") else SHORT.get(flag[1], "")
        # sbatch also takes a long option by any unambiguous prefix (--parti: --partition)
        managed = [m for m in MANAGED if m == name or (flag.startswith("--") and m.startswith(name))]
        if managed:
            raise UserError(f"{where}: {flag!r} is not for extra flags: {MANAGED[managed[0]]}")
    return text


def runtime(row_minutes: int, max_runtime: int) -> int:
    """The time limit of a job (minutes): the row's, capped at ``max_runtime`` (0: no cap)."""
    return min(row_minutes, max_runtime) if max_runtime else row_minutes


def attempts(row_minutes: int, max_runtime: int, signal_seconds: int) -> int:
    """Jobs of at most ``max_runtime`` minutes that a row of ``row_minutes`` needs, each
    losing ``signal_seconds`` before its limit and a minute to start (at least 1)."""
    if not max_runtime or row_minutes <= max_runtime:
        return 1
    signal_seconds = min(signal_seconds, max_runtime * 30)  # at most half the limit (train_extra)
    useful = max(30.0, max_runtime * 60.0 - signal_seconds - 60.0)
    return math.ceil(row_minutes * 60.0 / useful)


def signal_flag(signal_seconds: int) -> str:
    """SIGUSR1 ``signal_seconds`` before the time limit, to every process of the job's steps
    (not the batch shell): training saves a checkpoint and exits (0: no signal)."""
    return f"--signal=USR1@{signal_seconds}" if signal_seconds else ""


def extra(*parts: str) -> "str | None":
    """The slurm_extra resource of a job: the given flags joined (None, no resource, if none)."""
    text = " ".join(p for p in parts if p)
    return text or None
