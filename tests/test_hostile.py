"""A careless or hostile user: every subcommand with generated bad arguments, paths and
environments ends with exit 2, 3 or 4 and one paragraph, never a traceback; Ctrl-C
prints one line and leaves a run that resumes; a folder dataset (the ImageNet path)
resumes bit for bit after SIGKILLs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onebit.cli import main

TESTS = Path(__file__).parent

BASE = {  # a small valid command per subcommand; the test changes one or two options
    "train": ["train", "--dataset", "fashion_mnist", "--depth", "8", "--width", "0.5", "--out", "o", "--check"],
    "memory": ["memory", "--arch", "wrn", "--depth", "8", "--width", "0.5", "--image-size", "8",
               "--batch-size", "2", "--steps", "1", "--method", "fp32", "--no-peak"],
    "fidelity": ["fidelity", "--depth", "8", "--width", "0.25", "--image-size", "8", "--batch-size", "2",
                 "--draws", "2", "--method", "cl"],
    "data": ["data", "--dataset", "fashion_mnist"],
    "export": ["export"],
    "methods": ["methods"],
    "bench": ["bench", "--device", "cpu", "--parts", "check", "--method", "fp32"],
}
OPTIONS = {
    "train": ["--out", "--dataset", "--method", "--depth", "--width", "--seed", "--crop-pad", "--cutout",
              "--device", "--data-root", "--cutout-style", "--lr-min", "--workers", "--epochs"],
    "memory": ["--output", "--arch", "--method", "--depth", "--width", "--image-size", "--batch-size", "--device",
               "--budget", "--max-batch", "--seed", "--steps", "--in-channels", "--num-classes"],
    "fidelity": ["--output", "--checkpoint", "--dataset", "--data-root", "--method", "--depth", "--draws",
                 "--seed", "--batch-size"],
    "data": ["--output", "--dataset", "--data-root"],
    "export": ["-o", "CHECKPOINT"],
    "methods": ["--json"],
    "bench": ["--output", "--grid", "--method", "--parts", "--budget", "--device", "--train-dataset"],
}


def paths(tmp: Path) -> list[str]:
    (tmp / "dir").mkdir(exist_ok=True)
    (tmp / "file.txt").write_text("not what a command expects\n")
    (tmp / "empty.pt").write_bytes(b"")
    return [str(tmp / "dir"), str(tmp / "file.txt"), str(tmp / "empty.pt"), str(tmp / "missing" / "x.json"),
            "/proc/version", "/proc/onebit-unwritable.json", "", "x" * 300, str(tmp / "out.json")]


values = st.sampled_from(["-1", "0", "x", "nan", "inf", "1e400", str(10**30), "2.5", "", "cuda", "cuda:7",
                          "meta", "fp32", "nope", "wrn", "resnet18", "0x10", "a$(touch PWNED)", "1,2",
                          "1e9", "9" * 25])


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_subcommand_refuses_bad_input_with_one_paragraph(data, sandbox, capsys, monkeypatch):
    command = data.draw(st.sampled_from(sorted(BASE)))
    argv = list(BASE[command])
    pool = paths(sandbox)
    for opt in data.draw(st.lists(st.sampled_from(OPTIONS[command]), min_size=1, max_size=2, unique=True)):
        value = data.draw(st.one_of(values, st.sampled_from(pool)))
        if opt == "CHECKPOINT":
            argv.insert(1, value)
        elif opt == "--json":
            argv.append(opt)
        else:
            argv += [f"{opt}={value}"]
    if command == "export" and len(argv) == 1 or (command == "export" and argv[1].startswith("-")):
        argv.insert(1, data.draw(st.sampled_from(pool)))
    env = data.draw(st.sampled_from([None] * 6 + ["nonexistent_plugin_module", str(sandbox / "missing.py"),
                                                 "broken"]))
    if env == "broken":
        plugin = sandbox / "broken_plugin.py"
        plugin.write_text("raise RuntimeError('a plugin with a bug')\n")
        env = str(plugin)
    if env:
        monkeypatch.setenv("ONEBIT_PLUGINS", env)
    else:
        monkeypatch.delenv("ONEBIT_PLUGINS", raising=False)
    monkeypatch.delenv("ONEBIT_DEBUG", raising=False)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: usage and the option at fault
        code = e.code
    err = capsys.readouterr().err
    from hypothesis import event
    event(f"{command} exit {code}")
    assert "Traceback" not in err, (argv, err)
    assert code in (0, 2, 3, 4), (argv, code, err)
    if code:
        lines = [line for line in err.strip().splitlines() if not line.startswith(("usage:", " "))]
        assert len(lines) == 1 and "error" in lines[0], (argv, err)  # one paragraph
    assert not (sandbox / "PWNED").exists()


def plugin(root: Path, kind: str) -> Path:
    """A plugin file registering a test dataset for subprocesses."""
    path = root / f"{kind}_plugin.py"
    if kind == "fashion":
        body = ("from conftest import write_fashion\nfrom onebit.data.datasets import FashionMnist\n"
                "if 'tiny_fashion' not in DATASETS:\n"
                f"    files = write_fashion(__import__('pathlib').Path({str(root)!r}) / 'tiny-fashion', n_train=960)\n"
                "    DATASETS.register('tiny_fashion', FashionMnist('tiny_fashion', 10, 1, 28, files=files,"
                " url='file:///x/', folder='tiny-fashion', system_dir=''))\n")
    else:
        body = ("from onebit.data.datasets import ImageNet\n"
                "if 'tiny_imagenet' not in DATASETS:\n"
                "    DATASETS.register('tiny_imagenet', ImageNet('tiny_imagenet', 3, 3, 32, in_memory=False,"
                " top5=True))\n")
    path.write_text(f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nfrom onebit.data import DATASETS\n" + body)
    return path


def test_ctrl_c_prints_one_line_and_the_run_resumes(tmp_path):
    args = [sys.executable, "-m", "onebit.cli", "--plugins", str(plugin(tmp_path, "fashion")), "train",
            "--dataset", "tiny_fashion", "--depth", "8", "--width", "0.5", "--batch-size", "32", "--epochs", "40",
            "--crop-pad", "0", "--data-root", str(tmp_path), "--out", str(tmp_path / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    # Ctrl-C as at a terminal: a test runner started in the background (`cmd &` in a script)
    # ignores SIGINT, and the run would inherit that
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
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
    from test_reliability import assert_same_run, comparable

    def run(out, fault=None, workers="0"):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env.pop("ONEBIT_FAULT", None)
        if fault:
            env["ONEBIT_FAULT"] = fault
        cmd = [sys.executable, "-m", "onebit.cli", "--plugins", str(plugin(tmp_path, "imagenet")), "train",
               "--dataset", "tiny_imagenet", "--depth", "8", "--width", "0.25", "--batch-size", "4",
               "--epochs", "3", "--workers", workers, "--weight-decay", "0.0001", "--method", "cl",
               "--data-root", str(tiny_imagenet), "--out", str(out)]
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
