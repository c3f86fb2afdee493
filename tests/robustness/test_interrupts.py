"""Killed, interrupted and starved processes: SIGKILL at random points, Ctrl-C, a full disk;
each leaves a run that resumes bit for bit, and a clear message."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import TESTS, assert_nothing_truncated, assert_same_run, comparable, run_cli

pytestmark = pytest.mark.slow  # each test trains several times in subprocesses


def test_sigkill_at_random_points_then_rerun_equals_an_uninterrupted_run(tmp_path):
    ref = run_cli(tmp_path, tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr
    rng = random.Random(7)
    # kills during an epoch, while writing the checkpoint, between the checkpoint's two renames
    # and while writing the metrics; several in a row, each resuming the previous one's run
    faults = [
        f"step:{rng.randint(1, 8)}",
        "checkpoint:1",
        f"metrics:{rng.randint(1, 2)}",
        "checkpoint-rotate:1",
        f"step:{rng.randint(1, 8)}",
        "checkpoint:1",
    ]
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


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
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


def dataset_plugin(root: Path, kind: str) -> Path:
    """A dataset_plugin file registering a test dataset for subprocesses."""
    path = root / f"{kind}_plugin.py"
    if kind == "fashion":
        body = (
            "from conftest import write_fashion\nfrom onebit.data.datasets import FashionMnist\n"
            "if 'tiny_fashion' not in DATASETS:\n"
            f"    files = write_fashion(__import__('pathlib').Path({str(root)!r}) / 'tiny-fashion', n_train=960)\n"
            "    DATASETS.register('tiny_fashion', FashionMnist('tiny_fashion', 10, 1, 28, files=files,"
            " url='file:///x/', folder='tiny-fashion', system_dir=''))\n"
        )
    else:
        body = (
            "from onebit.data.datasets import ImageNet\n"
            "if 'tiny_imagenet' not in DATASETS:\n"
            "    DATASETS.register('tiny_imagenet', ImageNet('tiny_imagenet', 3, 3, 32, in_memory=False,"
            " top5=True))\n"
        )
    path.write_text(f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nfrom onebit.data import DATASETS\n" + body)
    return path


def test_ctrl_c_prints_one_line_and_the_run_resumes(tmp_path):
    args = [
        sys.executable,
        "-m",
        "onebit.cli",
        "--plugins",
        str(dataset_plugin(tmp_path, "fashion")),
        "train",
        "--dataset",
        "tiny_fashion",
        "--depth",
        "8",
        "--width",
        "0.5",
        "--batch-size",
        "32",
        "--epochs",
        "40",
        "--crop-pad",
        "0",
        "--data-root",
        str(tmp_path),
        "--out",
        str(tmp_path / "run"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    # Ctrl-C as at a terminal: a test runner started in the background (`cmd &` in a script)
    # ignores SIGINT, and the run would inherit that
    proc = subprocess.Popen(
        args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 240
    while not (tmp_path / "run" / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(0.2)  # inside the second epoch (or a later one: 40 tiny epochs outlast the signal)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().count("\n") == 0 and "interrupted" in err, err
    assert not (tmp_path / "run" / "final.json").exists()
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stdout and json.loads((tmp_path / "run" / "final.json").read_text())["epochs_done"] == 40


@pytest.mark.parametrize("faults", [["step:2", "checkpoint:1", "step:4", "metrics:1"]])
def test_folder_dataset_resume_is_bit_for_bit(tiny_imagenet, tmp_path, faults):
    """The ImageNet path (JPEGs read by DataLoader workers): killed at several points and
    resumed, with workers, it ends bit for bit where an uninterrupted run without workers
    ends (augmentation is seeded by seed, epoch and image; the order by seed and epoch)."""
    from helpers import assert_same_run, comparable

    def run(out, fault=None, workers="0"):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env.pop("ONEBIT_FAULT", None)
        if fault:
            env["ONEBIT_FAULT"] = fault
        cmd = [
            sys.executable,
            "-m",
            "onebit.cli",
            "--plugins",
            str(dataset_plugin(tmp_path, "imagenet")),
            "train",
            "--dataset",
            "tiny_imagenet",
            "--depth",
            "8",
            "--width",
            "0.25",
            "--batch-size",
            "4",
            "--epochs",
            "3",
            "--workers",
            workers,
            "--weight-decay",
            "0.0001",
            "--method",
            "cl",
            "--data-root",
            str(tiny_imagenet),
            "--out",
            str(out),
        ]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)

    assert run(tmp_path / "ref").returncode == 0
    assert run(tmp_path / "ref2").returncode == 0
    assert_same_run(comparable(tmp_path / "ref"), comparable(tmp_path / "ref2"))  # two runs agree
    killed = 0
    for fault in faults:
        proc = run(tmp_path / "run", fault, workers="2")
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
        killed += proc.returncode == -signal.SIGKILL
    assert killed >= 3
    assert run(tmp_path / "run", workers="2").returncode == 0
    assert_same_run(comparable(tmp_path / "run"), comparable(tmp_path / "ref"))
