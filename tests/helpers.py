"""Helpers shared by the test files: a tiny-dataset plugin for subprocesses, runs compared
without their timings, corrupted files, and hypothesis strategies for grid cells."""

import json
import os
import string
import subprocess
import sys
from pathlib import Path

import torch
from hypothesis import strategies as st

from onebit.runio import load_checkpoint
from onebit.train import TrainConfig

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
        " url='file:///x/', folder='tiny-fashion', system_dir=''))\n"
    )
    return path


ARGS = [
    "--dataset",
    "tiny_fashion",
    "--depth",
    "8",
    "--width",
    "0.25",
    "--batch-size",
    "32",
    "--epochs",
    "3",
    "--lr-max",
    "0.05",
    "--method",
    "cl",
]


def run_cli(root: Path, out: Path, fault: "str | None" = None, extra=()):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ONEBIT_FAULT", None)
    if fault:
        env["ONEBIT_FAULT"] = fault
    cmd = [
        sys.executable,
        "-m",
        "onebit.cli",
        "--plugins",
        str(plugin(root)),
        "train",
        *ARGS,
        "--data-root",
        str(root),
        "--out",
        str(out),
        *extra,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def comparable(run: Path) -> dict:
    final = {k: v for k, v in json.loads((run / "final.json").read_text()).items() if k not in TIMING}
    metrics = [
        {k: v for k, v in json.loads(line).items() if k not in TIMING}
        for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
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


def tiny_cfg(root, **kw):
    return TrainConfig(
        **{
            "dataset": "tiny_fashion",
            "depth": 8,
            "width": 0.25,
            "batch_size": 32,
            "epochs": 3,
            "lr_max": 0.05,
            "data_root": str(root),
            **kw,
        }
    )


def corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # one flipped byte in the middle: torch.load alone might not notice
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


numbers = st.one_of(
    st.integers(-3, 40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(
        ["", "1e9", "0", "-0", "2.5", "20", "26", "1,2", "0x10", " 3", "inf", "-inf", "nan", "1e400", "-1e-9"]
    ),
)


words = st.one_of(
    st.sampled_from(
        [
            "fp32",
            "cl",
            "cl-strict",
            "w1",
            "nope",
            "wrn",
            "resnet18",
            "mlp",
            "fashion_mnist",
            "cifar10",
            "imagenet",
            "nodata",
            "a/b",
            "",
        ]
    ),
    st.text(string.printable.replace("\t", "").replace("\n", "").replace("\r", ""), max_size=8),
)


cell = st.one_of(numbers, words)


def chromium():
    """Chromium's command where it is installed (.ci/run installs Debian's), else None."""
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
