"""Smoke check of tests/slurm_cluster.py (not a pytest module; needs .ci/install-slurm):

    python tests/slurm_smoke_check.py [WORKDIR]

Starts the cluster with 2 CPUs and 2 fake GPUs, runs 2 jobs of 10 s that must overlap,
cancels a running job, checks a --gpus=1 job gets one GPU and --gpus=3 is refused, stops
the cluster and checks that no slurm/munge/mariadb process is left.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from slurm_cluster import SlurmCluster, available  # noqa: E402

FIELDS = "JobID,JobName,State,Start,End"


def leftovers() -> str:
    """Live slurm/munge/mariadb processes (zombies waiting for init to reap them are dead)."""
    r = subprocess.run(["ps", "-e", "-o", "pid=,stat=,args="], capture_output=True, text=True)
    names = ("slurmctld", "slurmd", "slurmdbd", "slurmstepd", "munged", "mariadbd", "mysqld")
    return "\n".join(
        line for line in r.stdout.splitlines() if any(n in line for n in names) and line.split()[1][0] != "Z"
    )


def main(workdir: Path) -> None:
    ok, why = available()
    if not ok:
        sys.exit(f"SKIP: {why}")
    assert not leftovers(), f"daemons already running:\n{leftovers()}"
    t0 = time.monotonic()
    with SlurmCluster(workdir, cpus=2, memory_mb=1000, gpus=2) as c:
        print(f"started in {c.start_seconds:.1f} s: {c!r}, env={c.env}")
        print(c.run("sinfo").stdout + c.run("sacctmgr", "-n", "show", "assoc", "format=cluster,account,user").stdout)
        out = workdir / "out"
        out.mkdir()
        ids = []
        for name in ("sleep_a", "sleep_b"):
            r = c.run(
                "sbatch",
                "--parsable",
                f"--job-name={name}",
                "--cpus-per-task=1",
                "--mem=100",
                f"--output={out}/%x.log",
                "--wrap",
                f"date +%s.%N > {out}/{name}.start; sleep 10; date +%s.%N > {out}/{name}.end",
            )
            ids.append(r.stdout.strip().split(";")[0])
        c.wait_for_jobs(ids, timeout=60)
        rows = [r for r in c.sacct(FIELDS) if r["JobID"] in ids]
        print(f"sacct -X --parsable2 --noheader --format={FIELDS}:")
        print("\n".join("|".join(r.values()) for r in rows))
        assert [r["State"] for r in rows] == ["COMPLETED"] * 2, rows
        (a0, a1), (b0, b1) = [(datetime.fromisoformat(r["Start"]), datetime.fromisoformat(r["End"])) for r in rows]
        assert a0 < b1 and b0 < a1, f"jobs did not overlap: {rows}"
        t = {n: [float((out / f"{n}.{e}").read_text()) for e in ("start", "end")] for n in ("sleep_a", "sleep_b")}
        print("times written by the jobs:", {n: [round(x - t["sleep_a"][0], 2) for x in v] for n, v in t.items()})
        assert t["sleep_a"][0] < t["sleep_b"][1] and t["sleep_b"][0] < t["sleep_a"][1], t
        print("-> both COMPLETED, intervals overlap")

        jid = c.run(
            "sbatch", "--parsable", "--job-name=to_cancel", "-o", "/dev/null", "--wrap", "sleep 300"
        ).stdout.strip()
        for _ in range(100):
            if c.run("squeue", "-h", "-j", jid, "-o", "%T").stdout.strip() == "RUNNING":
                break
            time.sleep(0.1)
        else:
            raise AssertionError("job to cancel never ran")
        c.run("scancel", jid)
        c.wait_for_jobs([jid], timeout=30)
        row = next(r for r in c.sacct(FIELDS) if r["JobID"] == jid)
        print("|".join(row.values()))
        assert row["State"].startswith("CANCELLED"), row
        print("-> scancel: CANCELLED")

        jid = c.run(
            "sbatch",
            "--parsable",
            "--job-name=gpu1",
            "--gpus=1",
            "-o",
            f"{out}/gpu1.log",
            "--wrap",
            "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES",
        ).stdout.strip()
        c.wait_for_jobs([jid], timeout=30)
        row = next(r for r in c.sacct("JobID,State,AllocTRES") if r["JobID"] == jid)
        log = (out / "gpu1.log").read_text().strip()
        print(f"--gpus=1 job: {row} log: {log}")
        assert row["State"] == "COMPLETED" and "gres/gpu=1" in row["AllocTRES"], row
        assert log == "CUDA_VISIBLE_DEVICES=0", log
        r = c.run("sbatch", "--gpus=3", "--wrap", "true", check=False)
        print(f"--gpus=3: rc={r.returncode} {r.stderr.strip()}")
        assert r.returncode != 0
        r = c.run("sbatch", "--account=nosuchaccount", "--wrap", "true", check=False)
        print(f"--account=nosuchaccount: rc={r.returncode} {r.stderr.strip()}")
        assert r.returncode != 0
    print(f"stopped in {c.stop_seconds:.1f} s (total {time.monotonic() - t0:.1f} s)")
    left = leftovers()
    assert not left, f"processes left behind:\n{left}"
    print("no slurm/munge/mariadb process left: OK")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="slurm-smoke-") as d:
            main(Path(d))
