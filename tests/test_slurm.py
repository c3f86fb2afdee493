"""The pipeline on a real SLURM cluster: one node on this machine (slurmctld, slurmd,
slurmdbd with MariaDB, munge; tests/slurm_cluster.py), driven through
profiles/slurm exactly as README says, with only the account edited in.

Skipped, with the reason, where the packages are missing (.ci/install-slurm installs
them; CI runs it before the tests)."""

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime

import pytest

from slurm_cluster import SlurmCluster, available
from test_workflow import REPO, WORKFLOW, needs_fashion

ok, why = available()
CLUSTER_MARKS = [
    pytest.mark.skipif(not ok, reason=f"no SLURM here ({why}); run .ci/install-slurm as root"),
    needs_fashion,
    pytest.mark.slurm,
    pytest.mark.slow,
]


def on_cluster(test):
    """A test on the real cluster (the unit tests of onebit.slurm at the end need none)."""
    for mark in CLUSTER_MARKS:
        test = mark(test)
    return test


# the test cluster is small: two CPUs, so the rules' threads are lowered to one;
# status checks start after 3 s instead of 40 (a real cluster's jobs take longer)
SMALL = ["--set-threads", "memory=1", "fidelity=1", "--slurm-init-seconds-before-status-checks", "3"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    node = socket.gethostname().split(".")[0]
    with SlurmCluster(
        tmp_path_factory.mktemp("slurm"),
        cpus=2,
        memory_mb=16000,
        gpus=2,
        gpu_type="a100",
        features="80gb",
        extra_slurm_conf=f"PartitionName=cpu Nodes={node} Default=NO MaxTime=INFINITE State=UP\n",
    ) as c:
        yield c


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, cluster):
    d = tmp_path_factory.mktemp("slurm-workflow")
    for name in WORKFLOW:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, d / name)
    profile = d / "profiles/slurm/config.yaml"  # what README tells a user to edit
    text = profile.read_text()
    assert "slurm_account=my_account" in text
    profile.write_text(text.replace("slurm_account=my_account", f"slurm_account={cluster.account}"))
    return d


def snakemake(cluster, cwd, *args, timeout=900, env=None):
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", *SMALL, *args],
        cwd=cwd,
        env={**cluster.environ(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def default_sigint():
    """Ctrl-C as at a terminal: a test runner started in the background (``cmd &`` in a
    script) ignores SIGINT, and its children would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def snakemake_background(cluster, cwd, *args) -> subprocess.Popen:
    """Snakemake on the cluster in the background, output in .stdout, Ctrl-C as at a terminal."""
    return subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", *SMALL, *args],
        cwd=cwd,
        env=cluster.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,
    )


def slurm_jobs(cluster, workdir, rule: str) -> dict:
    """job id -> wildcards of every SLURM job of ``rule`` (the plugin's kept logs:
    .snakemake/slurm_logs/rule_<rule>/<wildcards>/<job id>.log)."""
    logs = workdir / ".snakemake/slurm_logs" / f"rule_{rule}"
    return {p.stem: p.parent.name for p in logs.rglob("*.log")} if logs.exists() else {}


def accounted(cluster, ids) -> dict:
    rows = {r["JobID"]: r for r in cluster.sacct("JobID,JobName,State,Submit,Start,End,AllocTRES")}
    return {i: rows[i] for i in ids}


def overlap(rows, start: str = "Start") -> int:
    """The most jobs that were in SLURM at the same instant, from ``start`` (``Start``:
    running; ``Submit``: queued or running) to ``End`` (sacct, 1 s resolution)."""
    t = lambda s: datetime.fromisoformat(s).timestamp()  # noqa: E731
    events = sorted([(t(r[start]), 1) for r in rows] + [(t(r["End"]), -1) for r in rows], key=lambda e: (e[0], e[1]))
    best = now = 0
    for _, d in events:
        now += d
        best = max(best, now)
    return best


def readme_cluster_recipe() -> list[str]:
    """The command block that opens README's "On a SLURM cluster" section, one line each."""
    text = (REPO / "README.md").read_text().split("## On a SLURM cluster", 1)[1]
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


@on_cluster
def test_readme_cluster_recipe_from_an_empty_login_node_to_the_report(cluster, workdir, tmp_path):
    """README's cluster block, followed literally on a fresh copy of the workflow: setup
    (CI's own, the CPU build here), the two edits it names (partition and account in the
    profile; max_runtime in config/config.yaml, as README's example: 1440), the dry run
    (the paper grid: every job's resources, runtime capped, the stop signal asked for,
    nothing submitted) and the run, with the smoke grid instead of the paper's (no CIFAR
    or GPUs here), to the report; every row's job completes, submitted together."""
    steps = readme_cluster_recipe()
    assert steps[0] == "bash envs/setup.sh --torch cu126", steps
    assert steps[1:3] == ["$EDITOR profiles/slurm/config.yaml", "$EDITOR config/config.yaml"], steps
    dry, run = steps[3:]
    assert dry == ".venv/bin/snakemake -n --profile profiles/slurm --config grid=paper", steps
    assert run == ".venv/bin/snakemake --profile profiles/slurm --config grid=paper", steps
    fresh = tmp_path / "login-node"
    shutil.copytree(workdir, fresh, ignore=shutil.ignore_patterns(".snakemake", "results", "reports"))
    profile = fresh / "profiles/slurm/config.yaml"  # slurm_account: the workdir fixture's edit
    profile.write_text(profile.read_text().replace("slurm_partition=gpu", f"slurm_partition={cluster.partition}"))
    config = fresh / "config/config.yaml"
    assert "  max_runtime: 0\n" in config.read_text()
    config.write_text(config.read_text().replace("  max_runtime: 0\n", "  max_runtime: 1440\n"))

    argv = dry.split()[1:]
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *argv], cwd=fresh, env=cluster.environ(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "runtime=1440" in out and "slurm_extra=--signal=USR1@300" in out, out[-3000:]
    assert "onebit_launch 1 8 train" in out  # the ImageNet rows: 8 GPUs, one process each
    assert not slurm_jobs(cluster, fresh, "train")  # nothing submitted
    t0 = time.monotonic()
    argv = run.replace("grid=paper", "grid=smoke").split()[1:]
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *argv, *SMALL],
        cwd=fresh,
        env=cluster.environ(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (fresh / "reports/smoke/report.html").stat().st_size > 10_000
    train = slurm_jobs(cluster, fresh, "train")
    assert len(train) == 5, train  # the smoke grid: 5 rows, one seed each
    rows = accounted(cluster, train)
    assert all(r["State"] == "COMPLETED" for r in rows.values()), rows
    # the grid's rows are submitted together, not one after another (whether the 2-CPU
    # test node also runs them together depends on the memory and fidelity jobs, which
    # compete for the same CPUs, so that is not asserted)
    assert overlap(rows.values(), start="Submit") >= 2, rows
    assert slurm_jobs(cluster, fresh, "memory") and slurm_jobs(cluster, fresh, "fidelity")
    for local in ("data", "collect", "figures", "report"):  # localrules: no SLURM job
        assert not slurm_jobs(cluster, fresh, local), local
    print(f"\nREADME's cluster recipe, smoke grid on SLURM: {wall:.0f} s; train jobs:")
    for i, r in sorted(rows.items(), key=lambda kv: int(kv[0])):
        print(f"  {i} {train[i]} {r['State']} {r['Start']} {r['End']}")


EXTRA = """row\ttable\tdataset\tarch\tdepth\twidth\tmethod\tepochs\tseeds\tbatch_size\tcrop_pad\ttrain_subset\ttest_subset\tgpus\tmem_mb\truntime
ddp\tbaseline\tfashion_mnist\twrn\t8\t0.5\tfp32\t1\t0\t32\t0\t256\t128\t2\t2000\t10
long\tbaseline\tfashion_mnist\twrn\t8\t0.5\tcl\t4\t0\t50\t0\t2500\t200\t0\t2000\t10
"""


@on_cluster
def test_cancelled_job_resumes_and_a_two_gpu_row_runs_torchrun(cluster, workdir):
    """scancel a running training job after its first checkpoint: the pipeline stops;
    the same command again resubmits it and it resumes from that checkpoint. A row of
    two GPUs gets --gpus=2 and runs two processes (CPU here: gloo)."""
    (workdir / "config/grids/extra.tsv").write_text(EXTRA)
    args = ["--config", "grid=extra", "grids={extra: config/grids/extra.tsv}", "device=cpu"]
    run = snakemake_background(cluster, workdir, *args)
    ck = workdir / "results/extra/runs/long/seed0/checkpoint.pt"
    deadline = time.monotonic() + 600
    while not ck.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ck.exists(), run.communicate()[0][-3000:] if run.poll() is not None else "no checkpoint in time"
    job = next(i for i, w in slurm_jobs(cluster, workdir, "train").items() if "long" in w)
    cluster.run("scancel", job)
    try:  # the plugin (2.8) does not recognise sacct's "CANCELLED by <uid>" and waits on:
        out = run.communicate(timeout=60)[0]  # README says to stop it with Ctrl-C
    except subprocess.TimeoutExpired:
        run.send_signal(signal.SIGINT)
        out = run.communicate(timeout=300)[0]
    assert run.returncode != 0 and not (workdir / "results/extra/runs/long/seed0/final.json").exists(), out[-3000:]
    cluster.wait_for_jobs([job])
    assert accounted(cluster, [job])[job]["State"].startswith("CANCELLED")

    again = snakemake(cluster, workdir, *args)
    assert again.returncode == 0, again.stderr[-4000:]
    log = (workdir / "results/extra/logs/train/long/seed0.log").read_text()
    assert re.search(r"resuming \S+ after epoch [1-3]\b", log), log[-2000:]
    final = (workdir / "results/extra/runs/long/seed0/final.json").read_text()
    assert '"epochs_done": 4' in final
    ddp = [i for i, w in slurm_jobs(cluster, workdir, "train").items() if "ddp" in w]
    assert ddp and "gres/gpu=2" in accounted(cluster, ddp)[ddp[-1]]["AllocTRES"]
    env = (workdir / "results/extra/runs/ddp/seed0/env.json").read_text()
    assert '"world_size": 2' in env


TYPED = """row\ttable\tdataset\tarch\tdepth\twidth\tmethod\tepochs\tseeds\tbatch_size\tcrop_pad\ttrain_subset\ttest_subset\tgpus\tmem_mb\truntime
g2\tbaseline\tfashion_mnist\twrn\t8\t0.5\tfp32\t1\t0\t32\t0\t128\t64\t2\t2000\t10
c0\tbaseline\tfashion_mnist\twrn\t8\t0.5\tfp32\t1\t0\t32\t0\t128\t64\t0\t2000\t10
"""


@on_cluster
def test_gpus_as_a_typed_gres_and_cpu_jobs_on_their_own_partition(cluster, workdir):
    """config slurm.gres = gpu:a100: a row of two GPUs asks for --gres=gpu:a100:2 (and no
    --gpus); slurm.cpu_partition: a row without GPUs goes to that partition, the GPU row to
    the profile's slurm_partition. sacct shows what each job was given."""
    (workdir / "config/grids/typed.tsv").write_text(TYPED)
    args = [
        "--config",
        "grid=typed",
        "grids={typed: config/grids/typed.tsv}",
        "device=cpu",
        "slurm={gres: 'gpu:a100', cpu_partition: cpu}",
        "--",
        "results/typed/runs/g2/seed0/final.json",
        "results/typed/runs/c0/seed0/final.json",
    ]
    proc = snakemake(cluster, workdir, "--verbose", *args, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    calls = sbatch_calls(proc)
    print("\nsbatch lines with slurm.gres and cpu_partition:", *(sbatch_flags(c) for c in calls), sep="\n  ")
    assert any(" -p gpu " in c and "--gres=gpu:a100:2" in c and "--gpus" not in c for c in calls), calls
    assert any(" -p cpu " in c and "--gres" not in c and "--gpus" not in c for c in calls), calls
    jobs = slurm_jobs(cluster, workdir, "train")
    rows = {r["JobID"]: r for r in cluster.sacct("JobID,Partition,State,AllocTRES")}
    by_row = {jobs[i].split("_")[0]: rows[i] for i in jobs if jobs[i].startswith(("g2_", "c0_"))}
    assert set(by_row) == {"g2", "c0"}, jobs
    assert "gres/gpu:a100=2" in by_row["g2"]["AllocTRES"], by_row
    assert by_row["g2"]["Partition"] == cluster.partition and by_row["c0"]["Partition"] == "cpu", by_row
    assert "gres/gpu" not in by_row["c0"]["AllocTRES"], by_row
    for r in by_row.values():
        assert r["State"] == "COMPLETED", by_row


def sbatch_flags(call: str) -> str:
    """An sbatch line's resource flags (without the job name, log path, directory and the
    command it wraps)."""
    words = call.split(" --wrap")[0].split()
    skip = {"--job-name", "--output", "-D", "--comment"}
    return " ".join(w for i, w in enumerate(words[1:], 1) if w not in skip and words[i - 1] not in skip)


def sbatch_calls(proc) -> list[str]:
    """The sbatch command lines the plugin ran (printed with --verbose)."""
    out = proc.stdout + proc.stderr
    return [line.split("sbatch call: ", 1)[1] for line in out.splitlines() if "sbatch call: " in line]


@on_cluster
def test_gpu_model_constraint_qos_and_extra_flags_from_the_profile_and_the_grid(cluster, workdir):
    """README's second example: set-resources of the train rule in the profile give
    --gpus=a100:N and -C; the row's qos and slurm_extra columns give --qos and extra flags,
    after the stop signal and config slurm.extra; the job runs with them."""
    profile = workdir / "profiles/slurm-model"
    shutil.copytree(workdir / "profiles/slurm", profile)
    text = (profile / "config.yaml").read_text()
    (profile / "config.yaml").write_text(text + "set-resources:\n  train:\n    gpu_model: a100\n    constraint: 80gb\n")
    header, row = TYPED.replace("g2\t", "m2\t").split("c0\t")[0].splitlines()
    (workdir / "config/grids/model.tsv").write_text(f"{header}\tqos\tslurm_extra\n{row}\tnormal\t--nice=5\n")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm-model", *SMALL, "--verbose"]
        + ["--config", "grid=model", "grids={model: config/grids/model.tsv}", "device=cpu"]
        + ["slurm={extra: --mail-type=NONE, max_runtime: 60}"]
        + ["--", "results/model/runs/m2/seed0/final.json"],
        cwd=workdir,
        env=cluster.environ(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    calls = [c for c in sbatch_calls(proc) if "rule_train" in c or "m2" in c]
    assert calls, sbatch_calls(proc)
    c = calls[0]
    print(f"\nsbatch line with the profile's gpu_model and constraint: {sbatch_flags(c)}")
    assert "--gpus=a100:2" in c and "-C 80gb" in c and "--qos=normal" in c, c
    assert "--signal=USR1@300 --mail-type=NONE --nice=5" in c, c
    jobs = slurm_jobs(cluster, workdir, "train")
    rows = {r["JobID"]: r for r in cluster.sacct("JobID,State,AllocTRES,QOS,Constraints")}
    (job,) = [rows[i] for i in jobs if jobs[i].startswith("m2_")]
    assert job["State"] == "COMPLETED" and "gres/gpu:a100=2" in job["AllocTRES"], job
    assert job["QOS"] == "normal" and job["Constraints"] == "80gb", job


@on_cluster
def test_a_row_across_two_nodes_asks_for_one_task_per_node_which_one_node_cannot_give(cluster, workdir):
    """nodes=2 on the one-node test cluster: the sbatch line asks for two nodes, one task
    (torchrun) on each, the row's GPUs per node of the typed GRES's type, and its CPUs per task;
    SLURM keeps it pending (two nodes asked of a one-node partition) and nothing runs; Ctrl-C
    cancels it (the launch across nodes itself: tests/test_train.py, with two agents
    standing for two nodes)."""
    header, row = TYPED.split("c0\t")[0].splitlines()
    (workdir / "config/grids/nodes.tsv").write_text(f"{header}\tnodes\tcpus\n{row.replace('g2', 'n2')}\t2\t2\n")
    args = ["--config", "grid=nodes", "grids={nodes: config/grids/nodes.tsv}", "slurm={gres: 'gpu:a100'}"]
    proc = snakemake_background(cluster, workdir, "--verbose", *args, "--", "results/nodes/runs/n2/seed0/final.json")
    try:  # SLURM accepts the job and keeps it pending: the partition has one node
        deadline, queued = time.monotonic() + 120, []
        while time.monotonic() < deadline and not queued:
            time.sleep(1)
            queued = cluster.run("squeue", "-h", "-o", "%i %T %D %r").stdout.split()
        assert queued[1:3] == ["PENDING", "2"], queued
    finally:
        proc.send_signal(signal.SIGINT)  # Snakemake cancels the jobs it submitted
        out, _ = proc.communicate(timeout=120)
    calls = [line.split("sbatch call: ", 1)[1] for line in out.splitlines() if "sbatch call: " in line]
    assert len(calls) == 1, out[-4000:]
    call = calls[0]
    for flag in ("--nodes=2", "--ntasks=2", "--cpus-per-task=2", "--ntasks-per-node=1", "--gpus-per-node=a100:2"):
        assert flag in call, (flag, call)
    assert "--gres" not in call and "--gpus=" not in call and "--ntasks-per-gpu" not in call, call
    print(f"\na row of 2 nodes x 2 GPUs: {sbatch_flags(call)}; squeue: {' '.join(queued)}")
    assert not (workdir / "results/nodes/runs/n2").exists()


CUT = """row\ttable\tdataset\tarch\tdepth\twidth\tmethod\tepochs\tseeds\tbatch_size\tcrop_pad\ttrain_subset\ttest_subset\tgpus\tmem_mb\truntime
cut\tbaseline\tfashion_mnist\twrn\t8\t0.5\tcl\t5\t0\t50\t0\t10000\t200\t0\t2000\t10
"""


@on_cluster
def test_a_row_longer_than_max_runtime_is_cut_resubmitted_and_equals_an_uninterrupted_run(cluster, workdir):
    """config slurm.max_runtime = 2 minutes, signal_seconds = 60: a row of 10 minutes (about
    80 s of training here) is submitted with -t 2 and --signal=USR1@60 (at most half a job's
    limit); SIGUSR1 stops it mid-epoch with a checkpoint, Snakemake resubmits it (retries)
    until it finishes, and its result equals the same row trained uninterrupted, bit for bit.
    With stage_data=$TMPDIR, each attempt reads its own copy of the data, removed after."""
    from helpers import assert_same_run, comparable
    from onebit.runio import load_checkpoint

    (workdir / "config/grids/cut.tsv").write_text(CUT)
    grids = "grids={cut: config/grids/cut.tsv, cutref: config/grids/cut.tsv}"
    args = ["--config", "grid=cut", grids, "device=cpu", "slurm={max_runtime: 2, signal_seconds: 60}"]
    node = workdir.parent / "node-tmp"
    node.mkdir()
    t0 = time.monotonic()
    proc = snakemake(
        cluster, workdir, "--verbose", *args, "stage_data=$TMPDIR", "--", "results/cut/runs/cut/seed0/final.json",
        timeout=1500, env={"TMPDIR": str(node)},
    )  # fmt: skip
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    calls = [c for c in sbatch_calls(proc) if "cut_0" in c or "rule_train" in c]
    assert calls and all(" -t 2 " in c and "--signal=USR1@60" in c for c in calls), calls
    jobs = sorted((i for i, w in slurm_jobs(cluster, workdir, "train").items() if w.startswith("cut_")), key=int)
    rows = {r["JobID"]: r for r in cluster.sacct("JobID,State,ExitCode,Timelimit,Start,End,Elapsed")}
    attempts = [rows[i] for i in jobs]
    print(f"\na row of 10 minutes under max_runtime 2 on SLURM: {wall:.0f} s; its jobs (sacct):")
    for r in attempts:
        print("  " + " ".join(f"{k}={v}" for k, v in r.items()))
    assert len(attempts) >= 2 and attempts[-1]["State"] == "COMPLETED", attempts
    assert all(r["State"] in ("FAILED", "TIMEOUT") for r in attempts[:-1]), attempts
    assert all(r["Timelimit"] == "00:02:00" for r in attempts), attempts
    logs = workdir / ".snakemake/slurm_logs/rule_train/cut_0"
    for i in jobs:  # the stopped command is resubmitted, never run again inside its spent job
        assert "Trying to restart" not in (logs / f"{i}.log").read_text(), i
    log = (workdir / "results/cut/logs/train/cut/seed0.log").read_text()
    # (Snakemake clears the log of each attempt: the last one says where it resumed and why)
    assert re.search(r"resuming \S+ after epoch \d(, step \d+ of epoch \d)? \(stopped by SIGUSR1; start \d+\)", log), (
        log
    )
    assert re.search(rf"data staged to {node}/onebit-fashion_mnist-{jobs[-1]}-[\w.-]+-\d+: 4 files", log), log
    assert not list(node.glob("onebit-*"))  # every attempt removed its copy
    stops = load_checkpoint(workdir / "results/cut/runs/cut/seed0/checkpoint.pt")["stops"]
    print(f"  stops recorded in the checkpoint: {stops}")
    # where the signal lands is up to SLURM's timing (mid-epoch: step > 0; during the evaluation
    # or BN re-estimation: at the epoch's end, step 0); the mid-epoch resume is tested bit for
    # bit in tests/test_train.py
    assert 1 <= len(stops) <= len(attempts) - 1, stops
    # the same row, uninterrupted, where Snakemake runs (the same one thread per job)
    ref = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--config", "grid=cutref", grids, "device=cpu"]
        + ["--", "results/cutref/runs/cut/seed0/final.json"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert ref.returncode == 0, ref.stderr[-3000:]
    assert_same_run(
        comparable(workdir / "results/cut/runs/cut/seed0"), comparable(workdir / "results/cutref/runs/cut/seed0")
    )


# ---------------------------------------------------------------- onebit.slurm, no cluster


def test_extra_flags_are_checked_before_any_job():
    from onebit.errors import UserError
    from onebit.slurm import check_extra

    assert check_extra("  --exclusive   --mail-type=END -x node1 ", "w") == "--exclusive --mail-type=END -x node1"
    assert check_extra("", "w") == ""
    for bad, why in [
        ("--time=5", "runtime"),
        ("-t 5", "runtime"),
        ("--mem=1G", "mem_mb"),
        ("-A other", "slurm_account"),
        ("--partition=x", "slurm_partition"),
        ("--signal=USR2@60", "signal_seconds"),
        ("--gres=gpu:2", "slurm.gres"),
        # the flags of rows across nodes: one task per node, the row's GPUs per node
        ("--nodes=3", "row's nodes"),
        ("-N 3", "row's nodes"),
        ("--ntasks-per-node=4", "one task per node"),
        ("--gpus-per-node=2", "gpus (per node)"),
        # sbatch's aliases, unambiguous prefixes and flags that fight the row's own settings
        ("--tasks-per-node=2", "one task per node"),
        ("--parti=debug", "slurm_partition"),
        ("--tim=99", "runtime"),
        ("--mem-per-gpu=8G", "mem_mb"),
        ("--cpus-per-gpu=8", "cpus"),
        ("--array=1-1000", "one job of its own"),
        ("-M other", "one cluster"),
        ("--wrap=id", "the job's command"),
        ("--qos=a;rm -rf /", "shell characters"),
        ("--comment='$(id)'", "shell characters"),
        ("--x=`id`", "shell characters"),
        ("exclusive", "not a list of sbatch flags"),
    ]:
        with pytest.raises(UserError, match=re.escape(why)) as e:
            check_extra(bad, "grid g, row r, field 'slurm_extra'")
        assert str(e.value).startswith("grid g, row r, field 'slurm_extra'")


def test_runtime_cap_attempts_and_signal():
    from onebit.slurm import attempts, extra, runtime, signal_flag

    assert runtime(3600, 1440) == 1440 and runtime(60, 1440) == 60 and runtime(3600, 0) == 3600
    # WRN-26-10 (3,600 minutes) under a 24-hour cap: three jobs of 1,440 minutes less 6 each
    assert attempts(3600, 1440, 300) == 3 and attempts(2880, 1440, 300) == 3 and attempts(1440, 1440, 300) == 1
    assert attempts(10, 1, 40) == 20 and attempts(60, 0, 300) == 1
    # the signal comes at most half a limit early; a job is counted for at least 30 s of training
    assert attempts(10, 2, 300) == attempts(10, 2, 60) == 20
    assert signal_flag(300) == "--signal=USR1@300" and signal_flag(0) == ""
    assert (
        extra("", None, "") is None and extra("--signal=USR1@300", "", "--exclusive") == "--signal=USR1@300 --exclusive"
    )
