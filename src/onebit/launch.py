"""``python -m onebit.launch --nodes N --nproc-per-node G -m onebit.cli train ...``: the
processes of one grid row (``nodes`` x ``gpus``), started by torchrun.

- One node: ``torchrun --standalone`` with G processes.
- Several nodes, inside a SLURM allocation (``SLURM_JOB_ID``): ``srun`` starts one torchrun
  agent per node (``--ntasks-per-node=1``), which meet at a c10d rendezvous on the job's
  first node (``scontrol show hostnames``), at a port derived from the job id. The global
  batch stays the grid row's: each of the N x G processes takes its share.
- Several nodes elsewhere: all N x G processes on this machine.

Every torchrun agent ignores SIGUSR1. SLURM's ``--signal=USR1@N`` reaches every process of a
job step: the training processes stop after their current step with a checkpoint
(:mod:`onebit.stopping`), while Python would end the agent at once (SIGUSR1 terminates by
default) and srun would tear the step down before the checkpoint is written. SIGTERM keeps
torchrun's own handling (it passes the signal on to the training processes and waits).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

#: rendezvous ports of multi-node jobs: BASE + job id modulo SPAN
RDZV_PORT_BASE, RDZV_PORT_SPAN = 29400, 1000


def torchrun(argv: list) -> None:
    """torchrun's main with SIGUSR1 ignored by the agent (its processes set their own)."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    from torch.distributed.run import main

    main(argv)


def first_node() -> str:
    """The first host of this SLURM job (where the rendezvous is hosted)."""
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST", "")
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
        return out.stdout.split()[0]
    except (OSError, subprocess.CalledProcessError, IndexError) as e:
        raise SystemExit(
            f"python -m onebit.launch: cannot find the first node of SLURM job {os.environ.get('SLURM_JOB_ID')} "
            f"(scontrol show hostnames {nodelist!r}: {getattr(e, 'stderr', '') or e}); run it inside the job "
            "(sbatch or salloc), where scontrol works"
        ) from None


def plan(nodes: int, nproc: int, rest: list, environ=os.environ) -> tuple:
    """(srun's argv, or [] to run the agent in this process; the torchrun agent's argv)
    of ``nodes`` x ``nproc`` processes running ``rest``."""
    if nodes == 1 or not environ.get("SLURM_JOB_ID"):
        return [], ["--standalone", f"--nproc-per-node={nodes * nproc}", *rest]
    job = environ["SLURM_JOB_ID"]
    port = RDZV_PORT_BASE + int("".join(c for c in job if c.isdigit()) or 0) % RDZV_PORT_SPAN
    srun = ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    srun += [sys.executable, "-m", "onebit.launch", "--agent"]
    agent = [
        f"--nnodes={nodes}",
        f"--nproc-per-node={nproc}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={first_node()}:{port}",
        f"--rdzv-id=onebit-{job}",
        *rest,
    ]
    return srun, agent


USAGE = "usage: python -m onebit.launch [--nodes N] --nproc-per-node G (-m MODULE | SCRIPT) ARGS..."


def _usage(problem: str) -> int:
    print(f"{USAGE}\npython -m onebit.launch: error: {problem}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--agent"]:  # one torchrun agent (on this node)
        torchrun(argv[1:])
        return 0
    counts, seen = {"--nodes": "1", "--nproc-per-node": ""}, set()
    while argv and argv[0].split("=")[0] in counts:  # our options come first; the rest is torchrun's
        key, _, value = argv.pop(0).partition("=")
        if not value:
            value = argv.pop(0) if argv else ""
        if key in seen:
            return _usage(f"{key} is given twice")
        seen.add(key)
        counts[key] = value
    for key, value in counts.items():
        if not value.isdigit() or int(value) < 1:
            return _usage(f"{key} must be a positive integer, got {value!r}" if value else f"{key} is missing")
    if not argv:
        return _usage("no command to run (e.g. -m onebit.cli train ...)")
    nodes, nproc = int(counts["--nodes"]), int(counts["--nproc-per-node"])
    srun, agent = plan(nodes, nproc, argv)
    if not srun:
        torchrun(agent)
        return 0
    proc = subprocess.Popen(srun + agent)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # srun passes Ctrl-C on to its tasks: wait for them
            continue


if __name__ == "__main__":
    sys.exit(main())
