"""The pipeline on a real SLURM cluster: one node on this machine (slurmctld, slurmd,
slurmdbd with MariaDB, munge; tests/slurm_cluster.py), driven through
profiles/slurm exactly as README says, with only the account edited in.

Skipped, with the reason, where the packages are missing (.ci/install-slurm installs
them; CI runs it before the tests)."""

import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest

from slurm_cluster import SlurmCluster, available
from test_workflow import REPO, WORKFLOW, needs_fashion

ok, why = available()
pytestmark = [
    pytest.mark.skipif(not ok, reason=f"no SLURM here ({why}); run .ci/install-slurm as root"),
    needs_fashion,
    pytest.mark.slurm,
    pytest.mark.slow,
]

# the test cluster is small: two CPUs, so the rules' threads are lowered to one;
# status checks start after 3 s instead of 40 (a real cluster's jobs take longer)
SMALL = ["--set-threads", "memory=1", "fidelity=1", "--slurm-init-seconds-before-status-checks", "3"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with SlurmCluster(tmp_path_factory.mktemp("slurm"), cpus=2, memory_mb=16000, gpus=2) as c:
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


def snakemake(cluster, cwd, *args, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", *SMALL, *args],
        cwd=cwd,
        env=cluster.environ(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def default_sigint():
    """Ctrl-C as at a terminal: a test runner started in the background (``cmd &`` in a
    script) ignores SIGINT, and its children would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def slurm_jobs(cluster, workdir, rule: str) -> dict:
    """job id -> wildcards of every SLURM job of ``rule`` (the plugin's kept logs:
    .snakemake/slurm_logs/rule_<rule>/<wildcards>/<job id>.log)."""
    logs = workdir / ".snakemake/slurm_logs" / f"rule_{rule}"
    return {p.stem: p.parent.name for p in logs.rglob("*.log")} if logs.exists() else {}


def accounted(cluster, ids) -> dict:
    rows = {r["JobID"]: r for r in cluster.sacct("JobID,JobName,State,Start,End,AllocTRES")}
    return {i: rows[i] for i in ids}


def overlap(rows) -> int:
    """The most jobs that ran at the same instant (sacct Start/End, 1 s resolution)."""
    t = lambda s: datetime.fromisoformat(s).timestamp()  # noqa: E731
    events = sorted([(t(r["Start"]), 1) for r in rows] + [(t(r["End"]), -1) for r in rows], key=lambda e: (e[0], e[1]))
    best = now = 0
    for _, d in events:
        now += d
        best = max(best, now)
    return best


def test_smoke_grid_on_slurm_end_to_end(cluster, workdir):
    t0 = time.monotonic()
    proc = snakemake(cluster, workdir, "--config", "grid=smoke")
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (workdir / "reports/smoke/report.html").stat().st_size > 10_000
    train = slurm_jobs(cluster, workdir, "train")
    assert len(train) == 5, train  # the smoke grid: 5 rows, one seed each
    rows = accounted(cluster, train)
    assert all(r["State"] == "COMPLETED" for r in rows.values()), rows
    assert overlap(rows.values()) >= 2, rows  # jobs of the grid ran side by side
    assert slurm_jobs(cluster, workdir, "memory") and slurm_jobs(cluster, workdir, "fidelity")
    for local in ("data", "collect", "figures", "report"):  # localrules: no SLURM job
        assert not slurm_jobs(cluster, workdir, local), local
    print(f"\nsmoke grid on SLURM: {wall:.0f} s; train jobs:")
    for i, r in sorted(rows.items(), key=lambda kv: int(kv[0])):
        print(f"  {i} {train[i]} {r['State']} {r['Start']} {r['End']}")


EXTRA = """row\ttable\tdataset\tarch\tdepth\twidth\tmethod\tepochs\tseeds\tbatch_size\tcrop_pad\ttrain_subset\ttest_subset\tgpus\tmem_mb\truntime
ddp\tbaseline\tfashion_mnist\twrn\t8\t0.5\tfp32\t1\t0\t32\t0\t256\t128\t2\t2000\t10
long\tbaseline\tfashion_mnist\twrn\t8\t0.5\tcl\t4\t0\t50\t0\t2500\t200\t0\t2000\t10
"""


def test_cancelled_job_resumes_and_a_two_gpu_row_runs_torchrun(cluster, workdir):
    """scancel a running training job after its first checkpoint: the pipeline stops;
    the same command again resubmits it and it resumes from that checkpoint. A row of
    two GPUs gets --gpus=2 and runs two processes (CPU here: gloo)."""
    (workdir / "config/grids/extra.tsv").write_text(EXTRA)
    args = ["--config", "grid=extra", "grids={extra: config/grids/extra.tsv}", "device=cpu"]
    run = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", *SMALL, *args],
        cwd=workdir,
        env=cluster.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,
    )
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
