"""Fault injection: killed jobs, corrupted files, full disks and bad input lose nothing
and explain themselves. Each test is one scenario of the reliability table (README)."""

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from onebit.runio import (CorruptCheckpoint, RunLock, RunLocked, load_checkpoint, save_checkpoint)
from onebit.train import TrainConfig, train

TESTS = Path(__file__).parent
# measurements of the machine, not results: they differ between any two runs
TIMING = {"epoch_seconds", "data_seconds", "images_per_s", "wall_seconds", "peak_mem_bytes"}


def plugin(root: Path) -> Path:
    """A plugin file registering the tiny Fashion-MNIST copy for subprocesses."""
    path = root / "tiny_plugin.py"
    path.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "from conftest import write_fashion\n"
        "from onebit.data import DATASETS\nfrom onebit.data.datasets import FashionMnist\n"
        "if 'tiny_fashion' not in DATASETS:\n"
        f"    files = write_fashion(__import__('pathlib').Path({str(root)!r}) / 'tiny-fashion')\n"
        "    DATASETS.register('tiny_fashion', FashionMnist('tiny_fashion', 10, 1, 28, files=files,"
        " url='file:///x/', folder='tiny-fashion', system_dir=''))\n")
    return path


ARGS = ["--dataset", "tiny_fashion", "--depth", "8", "--width", "0.25", "--batch-size", "32",
        "--epochs", "3", "--lr-max", "0.05", "--method", "cl"]


def run_cli(root: Path, out: Path, fault: "str | None" = None, extra=()):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ONEBIT_FAULT", None)
    if fault:
        env["ONEBIT_FAULT"] = fault
    cmd = [sys.executable, "-m", "onebit.cli", "--plugins", str(plugin(root)), "train", *ARGS,
           "--data-root", str(root), "--out", str(out), *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def comparable(run: Path) -> dict:
    final = {k: v for k, v in json.loads((run / "final.json").read_text()).items() if k not in TIMING}
    metrics = [{k: v for k, v in json.loads(line).items() if k not in TIMING}
               for line in (run / "metrics.jsonl").read_text().splitlines()]
    model = load_checkpoint(run / "checkpoint.pt")["model"]
    return {"final": final, "metrics": metrics, "model": model}


def assert_same_run(a: dict, b: dict) -> None:
    assert a["final"] == b["final"] and a["metrics"] == b["metrics"]
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def assert_nothing_truncated(run: Path) -> None:
    """Every file under its final name is complete (temporary files may remain)."""
    for name in ("checkpoint.pt", "checkpoint.pt.prev"):
        if (run / name).exists():
            load_checkpoint(run / name)  # raises if truncated
    for name in ("config.json", "env.json", "final.json"):
        if (run / name).exists():
            json.loads((run / name).read_text())
    if (run / "metrics.jsonl").exists():
        lines = (run / "metrics.jsonl").read_text().splitlines()
        assert len(lines) % 2 == 0  # a train and a test line per epoch
        [json.loads(line) for line in lines]


def test_sigkill_at_random_points_then_rerun_equals_an_uninterrupted_run(tmp_path):
    ref = run_cli(tmp_path, tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr
    rng = random.Random(7)
    # kills during an epoch, while writing the checkpoint, between the checkpoint's two renames
    # and while writing the metrics; several in a row, each resuming the previous one's run
    faults = [f"step:{rng.randint(1, 8)}", "checkpoint:1", f"metrics:{rng.randint(1, 2)}",
              "checkpoint-rotate:1", f"step:{rng.randint(1, 8)}", "checkpoint:1"]
    run = tmp_path / "run"
    killed = 0
    for fault in faults:
        proc = run_cli(tmp_path, run, fault)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
        killed += proc.returncode == -signal.SIGKILL
        assert_nothing_truncated(run)
        if proc.returncode == 0:
            break
    assert killed >= 4
    proc = run_cli(tmp_path, run)
    assert proc.returncode == 0, proc.stderr
    assert_same_run(comparable(run), comparable(tmp_path / "ref"))
    # a job that finished just as Snakemake was killed is run again, its output deleted
    # first: the trainer resumes after the last epoch and trains nothing
    (run / "final.json").unlink()
    proc = run_cli(tmp_path, run)
    assert proc.returncode == 0 and "after epoch 3" in proc.stdout and " lr " not in proc.stdout
    assert_same_run(comparable(run), comparable(tmp_path / "ref"))


def tiny_cfg(root, **kw):
    return TrainConfig(**{"dataset": "tiny_fashion", "depth": 8, "width": 0.25, "batch_size": 32,
                          "epochs": 3, "lr_max": 0.05, "data_root": str(root), **kw})


def corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # one flipped byte in the middle: torch.load alone might not notice
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_corrupt_checkpoint_falls_back_to_the_previous_one(tiny_fashion, tmp_path, how):
    ref = train(tiny_cfg(tiny_fashion), tmp_path / "ref", log=lambda *_: None)
    run = tmp_path / "run"
    assert train(tiny_cfg(tiny_fashion), run, stop_after=2, log=lambda *_: None) is None
    corrupt(run / "checkpoint.pt", how)
    logs = []
    final = train(tiny_cfg(tiny_fashion), run, log=logs.append)
    warning = next(line for line in logs if line.startswith("WARNING"))
    assert "checkpoint.pt" in warning and "falling back to the previous checkpoint" in warning
    assert any("resuming" in line and "after epoch 1" in line for line in logs)
    assert len(list(run.glob("checkpoint.pt.corrupt-*"))) == 1  # set aside, not deleted
    assert final["test_top1_err"] == ref["test_top1_err"]
    assert_same_run(comparable(run), comparable(tmp_path / "ref"))


def test_both_checkpoints_corrupt_restarts_the_run_with_a_warning(tiny_fashion, tmp_path):
    ref = train(tiny_cfg(tiny_fashion), tmp_path / "ref", log=lambda *_: None)
    run = tmp_path / "run"
    train(tiny_cfg(tiny_fashion), run, stop_after=2, log=lambda *_: None)
    corrupt(run / "checkpoint.pt", "flipped")
    corrupt(run / "checkpoint.pt.prev", "truncated")
    logs = []
    final = train(tiny_cfg(tiny_fashion), run, log=logs.append)
    warnings = [line for line in logs if line.startswith("WARNING")]
    assert len(warnings) == 2 and "restarting the run from epoch 0" in warnings[1]
    assert not any("resuming" in line for line in logs)
    assert final["test_top1_err"] == ref["test_top1_err"]


def test_checkpoint_verification():
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"ck-{os.getpid()}.pt"
    try:
        save_checkpoint({"w": torch.arange(1000.0)}, path)
        assert torch.equal(load_checkpoint(path)["w"], torch.arange(1000.0))
        for how in ("truncated", "flipped"):
            save_checkpoint({"w": torch.arange(1000.0)}, path, keep_previous=False)
            corrupt(path, how)
            with pytest.raises(CorruptCheckpoint, match="truncated|corrupted"):
                load_checkpoint(path)
        torch.save({"w": 1}, path)  # a plain torch file is not taken for a verified checkpoint
        with pytest.raises(CorruptCheckpoint, match="no end marker"):
            load_checkpoint(path)
    finally:
        for p in path.parent.glob(path.name + "*"):
            p.unlink()


def test_export_refuses_a_corrupt_checkpoint_with_a_fix(tiny_fashion, tmp_path, capsys):
    from onebit.cli import main

    train(tiny_cfg(tiny_fashion, method="w1", epochs=2), tmp_path / "r", log=lambda *_: None)
    corrupt(tmp_path / "r" / "checkpoint.pt", "flipped")
    assert main(["export", str(tmp_path / "r" / "checkpoint.pt")]) == 2
    err = capsys.readouterr().err
    assert "corrupted" in err and "checkpoint.pt.prev" in err and "Traceback" not in err


def test_a_second_trainer_on_the_same_run_is_refused(tiny_fashion, tmp_path, capsys):
    from onebit.cli import main

    run = tmp_path / "run"
    run.mkdir()
    with RunLock(run):  # a live holder, as another process would be
        with pytest.raises(RunLocked, match="another onebit process"):
            RunLock(run).__enter__()
        argv = ["train", "--dataset", "tiny_fashion", "--data-root", str(tiny_fashion), "--depth", "8",
                "--width", "0.25", "--epochs", "1", "--out", str(run)]
        assert main(argv) == 2
        assert f"pid {os.getpid()}" in capsys.readouterr().err
    assert main(argv) == 0  # released: the run proceeds


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    return proc.returncode == 0


def test_full_disk_gives_a_clear_error_and_keeps_earlier_results(tmp_path):
    disk = tmp_path / "small"
    if not _mount_tmpfs(disk, "256k"):
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    try:
        earlier = disk / "earlier" / "final.json"
        earlier.parent.mkdir()
        earlier.write_text('{"test_top1_err": 12.5}\n')
        proc = run_cli(tmp_path, disk / "run", extra=["--width", "1"])  # a ~0.6 MB checkpoint
        assert proc.returncode == 4, proc.stderr
        assert "No space left on device" in proc.stderr and "Free space" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert earlier.read_text() == '{"test_top1_err": 12.5}\n'
        assert not (disk / "run" / "checkpoint.pt").exists()  # no partial file under the name
        assert not list((disk / "run").glob(".*.tmp"))  # temporary files removed
        json.loads((disk / "run" / "config.json").read_text())
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
                    reason="needs Fashion-MNIST (envs/setup.sh installs Debian's dataset-fashion-mnist)")
def test_killed_and_concurrent_pipeline(tmp_path):
    """A second invocation is refused while one runs; Snakemake SIGKILLed with its jobs;
    re-running completes only what was missing."""
    import shutil
    import time

    from test_pipeline import REPO, WORKFLOW, snakemake

    for name in WORKFLOW:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--config", "grid=smoke"]
    first = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.time() + 300
        while not list(tmp_path.glob("results/smoke/runs/*/*/final.json")) and time.time() < deadline:
            time.sleep(0.5)
        assert first.poll() is None, "the pipeline finished before it could be interrupted"
        second = snakemake(tmp_path, "--cores", "1", "--config", "grid=smoke")
        assert second.returncode != 0
        assert "cannot be locked" in second.stderr + second.stdout
        os.killpg(first.pid, signal.SIGKILL)  # Snakemake and every job it started
        first.wait()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    done = {p: (p.stat().st_mtime_ns, json.loads(p.read_text()))
            for p in tmp_path.glob("results/smoke/runs/*/*/final.json")}
    n_rows = len(list(tmp_path.glob("results/smoke/logs/train/*/*.log")))
    # the lock of a killed Snakemake stays: the message says how to remove it
    stale = snakemake(tmp_path, "--cores", "2", "--config", "grid=smoke")
    assert stale.returncode != 0 and "--unlock" in stale.stderr + stale.stdout
    assert snakemake(tmp_path, "--unlock", "--config", "grid=smoke").returncode == 0
    rerun = snakemake(tmp_path, "--cores", "2", "--config", "grid=smoke")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (tmp_path / "reports/smoke/report.html").exists()
    rerun_done = 0
    for p, (mtime, before) in done.items():  # finished runs are not retrained
        if p.stat().st_mtime_ns == mtime:
            continue
        # a job that finished as Snakemake was killed is unconfirmed: Snakemake runs it
        # again, and the trainer resumes from its last checkpoint without training an epoch
        rerun_done += 1
        run, seed = p.parent.parent.name, p.parent.name
        log = (tmp_path / "results/smoke/logs/train" / run / f"{seed}.log").read_text()
        assert f"after epoch {before['epochs']}" in log and " lr " not in log, log
        after = json.loads(p.read_text())
        assert {k: v for k, v in after.items() if k != "wall_seconds"} == \
            {k: v for k, v in before.items() if k != "wall_seconds"}
    retrained = rerun.stderr.count("rule train:") + rerun.stdout.count("rule train:")
    total = len(list(tmp_path.glob("results/smoke/runs/*/*/final.json")))
    assert retrained == total - len(done) + rerun_done and len(done) >= 1 and n_rows >= 1


def test_collect_stops_when_metrics_disagree_with_final(tiny_fashion, tmp_path):
    """A truncated metrics file would report an earlier epoch as final: collect names the run."""
    from onebit.report.tables import InconsistentRun, tidy_metrics
    from onebit.grid import load_grid

    run = tmp_path / "runs" / "r1" / "seed0"
    train(tiny_cfg(tiny_fashion), run, log=lambda *_: None)
    grid_tsv = tmp_path / "g.tsv"
    head = "row\ttable\tdataset\tarch\tdepth\twidth\tbatch_size\tlr_max\tmethod\tepochs\tseeds\n"
    grid_tsv.write_text(head + "r1\tt\ttiny_fashion\twrn\t8\t0.25\t32\t0.05\tfp32\t3\t0\n")
    grid = load_grid(grid_tsv, check=False)
    assert len(tidy_metrics([run / "final.json"], grid)) == 6
    # a grid edited after the run finished (or a run copied in from another row) is named
    grid_tsv.write_text(head + "r1\tt\ttiny_fashion\twrn\t8\t0.25\t32\t0.05\tcl\t3\t0\n")
    with pytest.raises(InconsistentRun, match=r"not the run the grid asks for .*'method': \('fp32', 'cl'\)"):
        tidy_metrics([run / "final.json"], load_grid(grid_tsv, check=False))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:4]) + "\n")
    with pytest.raises(InconsistentRun, match=f"{run}.*last epoch 2, final.json says 3"):
        tidy_metrics([run / "final.json"], grid)


def test_export_never_overwrites_its_input(tiny_fashion, tmp_path, capsys):
    from onebit.cli import main

    train(tiny_cfg(tiny_fashion, method="w1", epochs=2), tmp_path / "r", log=lambda *_: None)
    ck = tmp_path / "r" / "checkpoint.pt"
    before = ck.read_bytes()
    for out, says in ((ck, "also an input"), (tmp_path / "r" / "checkpoint.pt.prev", "also an input"),
                      (tmp_path / "r", "is a folder")):
        assert main(["export", str(ck), "-o", str(out)]) == 2
        assert says in capsys.readouterr().err
    assert ck.read_bytes() == before


@pytest.mark.parametrize("arg", ["--crop-pad=-1", "--seed=18446744073709551616", "--device=tpu", "--cutout=-7",
                                 "--device=cuda", "--cutout-style=centre", "--lr-min=0.5"])
def test_check_refuses_what_training_refuses(arg, tmp_path, capsys):
    """--check and training validate the same (the trainer's constructor): each of these
    was once accepted by --check and refused (or silently recorded) by training."""
    from onebit.cli import main
    from onebit.config import from_namespace
    from onebit.train import Trainer

    try:
        code = main(["train", "--out", str(tmp_path / "o"), "--check", arg])
    except SystemExit as e:
        code = e.code
    assert code == 2 and "Traceback" not in capsys.readouterr().err
    if arg in ("--device=cuda", "--lr-min=0.5"):  # parsed fine, refused by the trainer itself
        from onebit.cli import build_parser

        ns = build_parser().parse_args(["train", "--out", "o", arg.replace("0.5", "0.5"), "--lr-max", "0.1"])
        with pytest.raises(ValueError):
            Trainer(from_namespace(ns), tmp_path / "o")
