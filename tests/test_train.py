"""The training engine: run-directory contract, determinism, resume, failures."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import onebit.train as train_mod
from helpers import run_cli
from onebit.cli import main
from onebit.runio import load_checkpoint
from onebit.train import ConfigMismatch, TrainConfig, train

TINY = dict(dataset="tiny_fashion", depth=8, width=0.25, batch_size=32, epochs=3, lr_max=0.05)


def cfg(root, **kw):
    return TrainConfig(**{**TINY, "data_root": str(root), **kw})


def read_metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_run_directory_contract(tiny_fashion, tmp_path):
    run = tmp_path / "run"
    c = cfg(tiny_fashion, method="w1+cl")
    final = train(c, run, log=lambda *_: None)
    assert {p.name for p in run.iterdir()} == {
        "config.json",
        "env.json",
        "metrics.jsonl",
        "final.json",
        "checkpoint.pt",
        ".lock",
        *(["checkpoint.pt.prev"] if c.epochs > 1 else []),
    }
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == "w1+cl" and config["params"] == final["params"]
    env = json.loads((run / "env.json").read_text())
    assert {"git_revision", "git_dirty", "torch_version", "device", "device_name", "threads"} <= set(env)
    lines = read_metrics(run)
    assert [(m["epoch"], m["split"]) for m in lines] == [(e, s) for e in (1, 2, 3) for s in ("train", "test")]
    for m in lines:  # every line carries the whole configuration
        assert {k: m[k] for k in TrainConfig().identity()} == TrainConfig(**{**TINY, "method": "w1+cl"}).identity()
        assert {"lr", "loss", "top1_err", "epoch_seconds", "images_per_s", "peak_mem_bytes"} <= set(m)
    assert final["test_top1_err"] == lines[-1]["top1_err"] and final["epochs_done"] == 3
    assert not any(p.name.endswith(".tmp") for p in run.iterdir())


def test_learns_the_toy_task(tiny_fashion, tmp_path):
    final = train(cfg(tiny_fashion, epochs=7, width=0.5, lr_max=0.1, crop_pad=0), tmp_path / "r", log=lambda *_: None)
    # the class is the row of a bright bar: row crops would change the label
    assert final["test_top1_err"] < 60  # chance is 90%


def test_same_seed_same_numbers_and_resume_is_bit_for_bit(tiny_fashion, tmp_path):
    c = cfg(tiny_fashion, method="cl", momentum_reset=True)
    a = train(c, tmp_path / "a", log=lambda *_: None)
    b = train(c, tmp_path / "b", log=lambda *_: None)
    assert train(c, tmp_path / "c", stop_after=1, log=lambda *_: None) is None  # "killed" after epoch 1
    assert not (tmp_path / "c" / "final.json").exists()
    assert len(read_metrics(tmp_path / "c")) == 2
    logs = []
    c_final = train(c, tmp_path / "c", log=logs.append)
    assert any("resuming" in s for s in logs)
    strip = lambda d: {k: v for k, v in d.items() if "seconds" not in k}  # noqa: E731
    assert strip(a) == strip(b) == strip(c_final)
    sa, sc = (load_checkpoint(tmp_path / r / "checkpoint.pt")["model"] for r in "ac")
    assert all(torch.equal(sa[k], sc[k]) for k in sa)

    def drop(ms):
        timing = ("seconds", "per_s", "peak_mem")
        return [{k: v for k, v in m.items() if not any(s in k for s in timing)} for m in ms]

    assert drop(read_metrics(tmp_path / "a")) == drop(read_metrics(tmp_path / "c"))


def test_completed_run_is_not_retrained(tiny_fashion, tmp_path):
    c = cfg(tiny_fashion, epochs=1)
    train(c, tmp_path / "r", log=lambda *_: None)
    before = (tmp_path / "r" / "checkpoint.pt").stat().st_mtime_ns
    logs = []
    train(c, tmp_path / "r", log=logs.append)
    assert "complete" in logs[0] and (tmp_path / "r" / "checkpoint.pt").stat().st_mtime_ns == before


def test_other_config_in_same_directory_is_refused(tiny_fashion, tmp_path):
    train(cfg(tiny_fashion, epochs=2), tmp_path / "r", stop_after=1, log=lambda *_: None)
    with pytest.raises(ConfigMismatch, match="method"):
        train(cfg(tiny_fashion, epochs=2, method="w1"), tmp_path / "r", log=lambda *_: None)


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tiny_fashion, tmp_path, monkeypatch, capsys):
    import onebit.step as T  # the one training step computes the loss

    calls = {"n": 0}
    real = T.F.cross_entropy

    def poisoned(logits, y, **kw):  # NaN from the 2nd epoch's first step on (3 steps per epoch)
        calls["n"] += 1
        out = real(logits, y, **kw)
        return out * float("nan") if calls["n"] > 3 and logits.requires_grad else out

    monkeypatch.setattr(T.F, "cross_entropy", poisoned)
    args = [
        "train",
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
        "--data-root",
        str(tiny_fashion),
        "--out",
        str(tmp_path / "r"),
    ]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "loss became nan at epoch 2" in err and "last good epoch" in err
    ck = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert ck["epoch"] == 1 and not (tmp_path / "r" / "final.json").exists()


@pytest.mark.parametrize(
    "bad", [["--epochs", "0"], ["--method", "w3"], ["--depth", "9"], ["--dataset", "mnist"], ["--batch-size", "x"]]
)
def test_bad_arguments_are_refused_readably(bad, tmp_path, capsys):
    try:
        rc = main(["train", "--out", str(tmp_path / "r"), *bad])
    except SystemExit as e:  # argparse's own refusal
        rc = e.code
    assert rc == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_bf16_autocast_step_for_every_method(tiny_fashion, tmp_path):
    from onebit import list_methods

    for method in list_methods():
        final = train(cfg(tiny_fashion, method=method, epochs=1, amp=True), tmp_path / method, log=lambda *_: None)
        assert final["test_top1_err"] <= 100


def test_imagenet_folder_training(tiny_imagenet, tmp_path):
    c = TrainConfig(
        dataset="tiny_imagenet",
        arch="resnet18",
        method="w1",
        epochs=1,
        batch_size=4,
        data_root=str(tiny_imagenet),
        workers=0,
        weight_decay=1e-4,
    )
    final = train(c, tmp_path / "r", log=lambda *_: None)
    assert "test_top5_err" in final and final["params"] > 11e6


def _torchrun(
    tiny_fashion, tmp_path, out, port: int, fault_rank: "int | None" = None, fault: str = "", launch=None, env=None
):
    """``onebit train`` as two gloo processes under torchrun; ``fault`` (ONEBIT_FAULT) for
    rank ``fault_rank`` only. ``launch``: the launcher's argv instead of torchrun's."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    env.pop("ONEBIT_FAULT", None)
    if fault:
        env["ONEBIT_FAULT"] = fault
    # the child processes need the test dataset registered: run through a tiny wrapper
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(
        "import os, sys\n"
        f"if os.environ['RANK'] != {str(fault_rank)!r}: os.environ.pop('ONEBIT_FAULT', None)\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from conftest import write_fashion\n"
        "from onebit.data import DATASETS\nfrom onebit.data.datasets import FashionMnist\n"
        f"files = write_fashion(__import__('pathlib').Path({str(tiny_fashion)!r}) / 'tiny-ddp')\n"
        "DATASETS.register('tiny_fashion', FashionMnist('tiny_fashion', 10, 1, 28, files=files,"
        " url='file:///x/', folder='tiny-ddp', system_dir=''))\n"
        "from onebit.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    launch = launch or [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
    ]
    cmd = [
        *launch, str(wrapper), "train", "--dataset", "tiny_fashion", "--depth", "8", "--width", "0.25",
        "--batch-size", "16", "--epochs", "2", "--method", "cl", "--data-root", str(tiny_fashion),
        "--out", str(out),
    ]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_torchrun_data_parallel_on_cpu(tiny_fashion, tmp_path):
    proc = _torchrun(tiny_fashion, tmp_path, tmp_path / "r", 29531)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "r"
    assert json.loads((run / "env.json").read_text())["world_size"] == 2
    lines = read_metrics(run)
    train_imgs = [m["images"] for m in lines if m["split"] == "train"]
    test_imgs = [m["images"] for m in lines if m["split"] == "test"]
    assert train_imgs == [96, 96] and test_imgs == [40, 40]  # both ranks' shards are counted
    assert (run / "final.json").exists()


@pytest.mark.slow
def test_a_stop_signal_to_one_process_of_a_data_parallel_run_stops_all_at_the_same_step(tiny_fashion, tmp_path):
    """SIGUSR1 reaches rank 1 only (rank 0 writes the checkpoint): both stop after the same
    step, and the resumed run equals an uninterrupted one (two gloo processes)."""
    from helpers import assert_same_run, comparable

    assert _torchrun(tiny_fashion, tmp_path, tmp_path / "ref", 29532).returncode == 0
    proc = _torchrun(tiny_fashion, tmp_path, tmp_path / "r", 29533, fault_rank=1, fault="step:8:USR1")
    assert proc.returncode != 0 and "stopped by SIGUSR1 after step 2 of epoch 2" in proc.stderr, proc.stderr[-3000:]
    assert "stopped by a stop signal to another process after step 2 of epoch 2" in proc.stderr
    assert load_checkpoint(tmp_path / "r/checkpoint.pt")["partial"]["batches"] == 2
    proc = _torchrun(tiny_fashion, tmp_path, tmp_path / "r", 29534)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(comparable(tmp_path / "r"), comparable(tmp_path / "ref"))


FAKE_SRUN = """#!/bin/bash
# srun on one machine: the command once per task, each standing for a node; SIGUSR1 and
# SIGTERM reach every process of the step, as SLURM's --signal and the time limit do
n=1
while [[ $1 == --* ]]; do case $1 in --ntasks=*) n=${1#--ntasks=};; esac; echo "$1" >> "$SRUN_LOG"; shift; done
pids=()
for ((i = 0; i < n; i++)); do SLURM_PROCID=$i SLURM_NODEID=$i "$@" & pids+=($!); done
echo "${pids[@]}" > "$SRUN_LOG.pids"
rc=0
for p in "${pids[@]}"; do wait "$p"; r=$?; [[ $r -ne 0 && $rc -eq 0 ]] && rc=$r; done
exit $rc
"""


def _fake_slurm(tmp_path) -> dict:
    """srun and scontrol stand-ins on PATH, and SLURM_JOB_ID: onebit.launch takes its
    multi-node path on this machine."""
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    (bin_ / "srun").write_text(FAKE_SRUN)
    (bin_ / "scontrol").write_text("#!/bin/sh\necho localhost\n")
    for f in bin_.iterdir():
        f.chmod(0o755)
    return {"PATH": f"{bin_}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242", "SRUN_LOG": str(tmp_path / "srun.log")}


@pytest.mark.slow
def test_a_row_across_two_nodes_equals_one_node_with_as_many_processes(tiny_fashion, tmp_path):
    """nodes=2 x 1 process: srun starts one torchrun agent per node, which meet at a c10d
    rendezvous on the first node; the run equals the one-node run of two processes, bit
    for bit (two gloo agents on this machine stand for the two nodes)."""
    from helpers import assert_same_run, comparable

    launch = [sys.executable, "-m", "onebit.launch"]
    proc = _torchrun(tiny_fashion, tmp_path, tmp_path / "one", 0, launch=[*launch, "--nproc-per-node", "2"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    env = _fake_slurm(tmp_path)
    two = [*launch, "--nodes", "2", "--nproc-per-node", "1"]
    proc = _torchrun(tiny_fashion, tmp_path, tmp_path / "two", 0, launch=two, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    srun = (tmp_path / "srun.log").read_text().split()
    assert srun == ["--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"], srun
    assert json.loads((tmp_path / "two/env.json").read_text())["world_size"] == 2
    assert_same_run(comparable(tmp_path / "two"), comparable(tmp_path / "one"))


@pytest.mark.slow
def test_sigusr1_to_every_process_of_a_two_node_row_stops_it_with_a_checkpoint(tiny_fashion, tmp_path):
    """SLURM's --signal=USR1 reaches the torchrun agents too: they ignore it, the training
    processes stop after the same step with a checkpoint, and the resumed run equals an
    uninterrupted one."""
    from helpers import assert_same_run, comparable

    env = _fake_slurm(tmp_path)
    two = [sys.executable, "-m", "onebit.launch", "--nodes", "2", "--nproc-per-node", "1"]
    assert _torchrun(tiny_fashion, tmp_path, tmp_path / "ref", 0, launch=two, env=env).returncode == 0
    (tmp_path / "srun.log.pids").unlink()
    # every process of the step gets SIGUSR1 once the run has started its second epoch
    stopper = subprocess.Popen(
        [sys.executable, "-c", STOPPER, str(tmp_path / "srun.log.pids"), str(tmp_path / "r" / "metrics.jsonl")]
    )
    proc = _torchrun(tiny_fashion, tmp_path, tmp_path / "r", 0, launch=two, env=env)
    stopper.wait(timeout=60)
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert "stopped by SIGUSR1 after step" in proc.stderr, proc.stderr[-3000:]
    assert "Signals.SIGUSR1" not in proc.stderr  # no agent died of it
    state = load_checkpoint(tmp_path / "r/checkpoint.pt")
    assert state["stops"] and state["stops"][-1]["signal"] == "SIGUSR1"
    proc = _torchrun(tiny_fashion, tmp_path, tmp_path / "r", 0, launch=two, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(comparable(tmp_path / "r"), comparable(tmp_path / "ref"))


STOPPER = """
import os, pathlib, signal, sys, time
pids, metrics = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
deadline = time.time() + 50
while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\\n") >= 2):
    time.sleep(0.02)
agents = [int(p) for p in pids.read_text().split()]
def tree(pid):
    kids = pathlib.Path(f"/proc/{pid}/task/{pid}/children")
    out = [pid]
    for k in (kids.read_text().split() if kids.exists() else []):
        out += tree(int(k))
    return out
for pid in [q for a in agents for q in tree(a)]:
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        pass
"""


@pytest.mark.parametrize("reset", [True, False])
def test_momentum_reset_at_warm_restarts(tiny_fashion, tmp_path, reset):
    """96 images / batch 32 = 3 steps per epoch; with t0=1, tmult=2 cycles start at
    steps 0, 3 and 9. With the reset, the momentum is zero on those steps only."""
    from onebit.train import Trainer

    tr = Trainer(cfg(tiny_fashion, epochs=4, momentum_reset=reset), tmp_path / "r", log=lambda *_: None)
    tr._build()
    zero_at = []
    real_step = tr.opt.step

    def spy(*a, **kw):
        bufs = [s["momentum_buffer"] for s in tr.opt.state.values() if s.get("momentum_buffer") is not None]
        zero_at.append(bool(bufs) and all(not b.any() for b in bufs))
        return real_step(*a, **kw)

    tr.opt.step = spy
    step = 0
    for epoch in range(4):
        step, _ = tr.train_epoch(epoch, step)
    assert [i for i, z in enumerate(zero_at) if z] == ([3, 9] if reset else [])


def test_finished_run_rerun_with_other_arguments_is_refused(tiny_fashion, tmp_path, capsys):
    train(cfg(tiny_fashion, epochs=1), tmp_path / "r", log=lambda *_: None)
    with pytest.raises(ConfigMismatch, match="finished run of another configuration.*epochs"):
        train(cfg(tiny_fashion, epochs=2), tmp_path / "r", log=lambda *_: None)
    args = [
        "train",
        "--dataset",
        "tiny_fashion",
        "--depth",
        "8",
        "--width",
        "0.25",
        "--batch-size",
        "32",
        "--epochs",
        "2",
        "--lr-max",
        "0.05",
        "--data-root",
        str(tiny_fashion),
        "--out",
        str(tmp_path / "r"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "another configuration" in err and "another --out" in err and "Traceback" not in err


def test_foreign_checkpoint_is_refused_and_left_alone(tiny_fashion, tmp_path):
    import shutil

    train(cfg(tiny_fashion, epochs=2, method="w1"), tmp_path / "w1", stop_after=1, log=lambda *_: None)
    run = tmp_path / "cl"
    run.mkdir()
    shutil.copy(tmp_path / "w1" / "checkpoint.pt", run / "checkpoint.pt")
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(ConfigMismatch, match="another configuration.*method.*'w1', 'cl'"):
        train(cfg(tiny_fashion, epochs=2, method="cl"), run, log=lambda *_: None)
    assert (run / "checkpoint.pt").read_bytes() == before and not list(run.glob("*.corrupt-*"))


def test_checkpoint_format_versions(tiny_fashion, tmp_path):
    """A state of a newer format is refused with a message, never set aside as corrupt;
    one of format 1 (before the format key) resumes."""
    from onebit.rundir import StateVersionError
    from onebit.runio import save_checkpoint

    c = cfg(tiny_fashion, epochs=2)
    ref = train(c, tmp_path / "ref", log=lambda *_: None)
    run = tmp_path / "r"
    train(c, run, stop_after=1, log=lambda *_: None)
    state = load_checkpoint(run / "checkpoint.pt")
    save_checkpoint({**state, "format": 99}, run / "checkpoint.pt", keep_previous=False)
    with pytest.raises(StateVersionError, match="newer onebit"):
        train(c, run, log=lambda *_: None)
    assert not list(run.glob("*.corrupt-*"))
    del state["format"]
    save_checkpoint(state, run / "checkpoint.pt", keep_previous=False)
    final = train(c, run, log=lambda *_: None)
    assert final["test_top1_err"] == ref["test_top1_err"]


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["fp32", "w1+cl", "cl-strict"])
def test_resumed_run_on_cuda(tiny_fashion, tmp_path, method):
    """On a GPU (channels_last, data on the device, bf16): a run stopped after one epoch
    resumes from its checkpoint and completes."""
    c = cfg(tiny_fashion, method=method, epochs=2, amp=True, device="cuda")
    assert train(c, tmp_path / "r", stop_after=1, log=lambda *_: None) is None
    logs = []
    final = train(c, tmp_path / "r", log=logs.append)
    assert any("resuming" in s and "after epoch 1" in s for s in logs)
    assert final["epochs_done"] == 2 and json.loads((tmp_path / "r" / "env.json").read_text())["device"] == "cuda"
    assert [m["epoch"] for m in read_metrics(tmp_path / "r")] == [1, 1, 2, 2]


def test_a_run_given_gpus_refuses_the_cpu_with_a_cpu_only_build(monkeypatch):
    """A grid row with gpus > 0 and device auto never trains on the CPU: a CPU-only build
    (e.g. installed on a login node) is named, with the command that installs CUDA's."""
    from onebit.config import check_device
    from onebit.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(ConfigError) as e:
        check_device("auto", gpus=1)
    text = str(e.value)
    assert "CPU-only build" in text and "envs/setup.sh --torch cu" in text and "device: cpu" in text
    check_device("auto", gpus=0)  # a CPU row is fine
    check_device("cpu", gpus=1)  # and so is the CPU asked for on purpose


def test_a_run_given_gpus_on_a_cuda_build_without_a_device_names_the_job(monkeypatch):
    from onebit.config import check_device
    from onebit.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ConfigError) as e:
        check_device("auto", gpus=2)
    text = str(e.value)
    assert "built for CUDA 12.6 but sees no GPU" in text and "CUDA_VISIBLE_DEVICES=''" in text
    assert "--gres" in text and "nvidia-smi" in text
    with pytest.raises(ConfigError, match="sees no CUDA device"):
        check_device("cuda", gpus=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this CPU-only check needs a machine without CUDA")
def test_gpu_row_on_a_cpu_machine_exits_2_and_writes_nothing(tiny_fashion, tmp_path, monkeypatch):
    """What the workflow runs for a gpus=1 row (ONEBIT_GPUS=1): one paragraph, exit 2,
    no run directory; device cpu trains it on purpose."""
    out = tmp_path / "run"
    monkeypatch.setenv("ONEBIT_GPUS", "1")
    proc = run_cli(tiny_fashion, out)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "asks for 1 GPU(s)" in proc.stderr and "Nothing was trained or written" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()
    proc = run_cli(tiny_fashion, out, extra=["--device", "cpu"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "env.json").read_text())["device"] == "cpu"


def _quiet(*_):
    pass


def _stop_at(monkeypatch, step: int, sig: str) -> None:
    """The process sends itself ``sig`` after training step ``step`` (in-process)."""
    from onebit import runio

    monkeypatch.setenv("ONEBIT_FAULT", f"step:{step}:{sig}")
    monkeypatch.setattr(runio, "_FAULT_COUNTS", {})


@pytest.mark.parametrize("sig", ["USR1", "TERM"])
def test_a_stop_signal_saves_mid_epoch_and_the_resumed_run_equals_an_uninterrupted_one(
    tiny_fashion, tmp_path, monkeypatch, sig
):
    """SLURM's --signal=USR1@N before a time limit, or SIGTERM (scancel, the limit itself):
    the run stops after the current step with a checkpoint of that step, exits 75, and the
    same command continues it to the uninterrupted run's result, bit for bit."""
    import signal

    from helpers import assert_same_run, comparable
    from onebit.errors import Interrupted

    c = cfg(tiny_fashion, method="cl")  # 3 steps per epoch, noise drawn every step
    train(c, tmp_path / "ref", log=_quiet)
    run = tmp_path / "r"
    before = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGTERM)
    _stop_at(monkeypatch, 5, sig)
    with pytest.raises(Interrupted, match=f"stopped by SIG{sig} after step 2 of epoch 2") as e:
        train(c, run, log=_quiet)
    assert e.value.exit_code == 75
    assert (signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGTERM)) == before  # restored
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["format"] == 3 and state["epoch"] == 1 and state["step"] == 5
    assert state["partial"]["batches"] == 2 and state["partial"]["seen"] == 64
    assert len(read_metrics(run)) == 2  # the completed epoch only
    assert not (run / "final.json").exists()
    # stopped again, in the resumed epoch's last step: the epoch ends, its checkpoint is the epoch's
    _stop_at(monkeypatch, 1, sig)
    with pytest.raises(Interrupted, match="after epoch 2"):
        train(c, run, log=_quiet)
    assert load_checkpoint(run / "checkpoint.pt")["format"] == 2
    monkeypatch.delenv("ONEBIT_FAULT")
    logs = []
    train(c, run, log=logs.append)
    assert logs[0].endswith(f"after epoch 2 (stopped by SIG{sig}; start 3)")
    assert [(s["epoch"], s["step"]) for s in load_checkpoint(run / "checkpoint.pt")["stops"]] == [(1, 2), (2, 0)]
    assert_same_run(comparable(run), comparable(tmp_path / "ref"))


def test_a_stop_signal_mid_epoch_of_an_image_folder_run(tiny_imagenet, tmp_path, monkeypatch):
    """The folder path (ImageNet) continues an epoch by skipping the images already taken:
    its order and augmentation follow from (seed, epoch, image)."""
    from helpers import assert_same_run, comparable
    from onebit.errors import Interrupted

    c = TrainConfig(
        dataset="tiny_imagenet", arch="resnet18", method="w1", epochs=2, batch_size=4,
        data_root=str(tiny_imagenet), workers=0, weight_decay=1e-4,
    )  # fmt: skip
    train(c, tmp_path / "ref", log=_quiet)
    _stop_at(monkeypatch, 4, "USR1")  # 3 steps per epoch: the first of epoch 2
    with pytest.raises(Interrupted, match="after step 1 of epoch 2"):
        train(c, tmp_path / "r", log=_quiet)
    monkeypatch.delenv("ONEBIT_FAULT")
    train(c, tmp_path / "r", log=_quiet)
    assert_same_run(comparable(tmp_path / "r"), comparable(tmp_path / "ref"))


def test_a_malformed_mid_epoch_state_is_refused(tiny_fashion, tmp_path, monkeypatch):
    from onebit.errors import Interrupted
    from onebit.rundir import StateVersionError
    from onebit.runio import save_checkpoint

    c = cfg(tiny_fashion)
    run = tmp_path / "r"
    _stop_at(monkeypatch, 2, "USR1")
    with pytest.raises(Interrupted):
        train(c, run, log=_quiet)
    monkeypatch.delenv("ONEBIT_FAULT")
    state = load_checkpoint(run / "checkpoint.pt")
    for bad in ({**state["partial"], "batches": 0}, {"batches": 1}, "2 steps"):
        save_checkpoint({**state, "partial": bad}, run / "checkpoint.pt", keep_previous=False)
        with pytest.raises(StateVersionError, match="mid-epoch state"):
            train(c, run, log=_quiet)
    order = state["partial"]["data"]["order"]
    save_checkpoint(
        {**state, "partial": {**state["partial"], "data": {"order": order[:-1]}}}, run / "checkpoint.pt",
        keep_previous=False,
    )  # fmt: skip
    with pytest.raises(StateVersionError, match="data order does not fit"):
        train(c, run, log=_quiet)
    assert not list(run.glob("*.corrupt-*"))  # refused, never set aside as damaged


def test_a_run_on_staged_data_equals_one_on_data_root_and_a_stop_removes_the_stage(tiny_fashion, tmp_path, monkeypatch):
    """stage_data=$VAR: the dataset is copied to the node-local folder once per start, read
    there, and removed when the run ends, also when a stop signal ends it mid-epoch; the
    result is that of a run on data_root, bit for bit, and data_root is never written."""
    from helpers import assert_same_run, comparable
    from onebit.errors import Interrupted

    local = tmp_path / "node-local"
    local.mkdir()
    monkeypatch.setenv("ONEBIT_TEST_TMPDIR", str(local))
    before = sorted((p, p.stat().st_mtime_ns) for p in tiny_fashion.rglob("*"))
    c = cfg(tiny_fashion, method="cl")
    train(c, tmp_path / "ref", log=_quiet)
    staged = cfg(tiny_fashion, method="cl", stage_data="$ONEBIT_TEST_TMPDIR")
    _stop_at(monkeypatch, 4, "USR1")
    logs = []
    with pytest.raises(Interrupted, match="after step 1 of epoch 2"):
        train(staged, tmp_path / "r", log=logs.append)
    assert list(local.iterdir()) == []
    assert any(line.startswith(f"data staged to {local}/onebit-tiny_fashion-") for line in logs), logs
    monkeypatch.delenv("ONEBIT_FAULT")
    train(staged, tmp_path / "r", log=logs.append)
    assert list(local.iterdir()) == [] and sum("data staged to" in line for line in logs) == 2
    assert_same_run(comparable(tmp_path / "r"), comparable(tmp_path / "ref"))
    assert sorted((p, p.stat().st_mtime_ns) for p in tiny_fashion.rglob("*")) == before
    # stage_data is how a run is executed, not what it computes: a resume may change it
    assert json.loads((tmp_path / "r/config.json").read_text())["stage_data"] == "$ONEBIT_TEST_TMPDIR"


def test_the_launcher_and_stage_data_refuse_bad_arguments_with_what_to_do(tmp_path):
    """python -m onebit.launch names the argument that is wrong (missing, twice, not a
    positive integer, no command; --opt=value is understood); a relative --stage-data is
    refused with why, before anything runs."""
    for argv, why in [
        ([], "--nproc-per-node is missing"),
        (["--nproc-per-node=2"], "no command to run"),
        (["--nproc-per-node", "two", "-m", "x"], "--nproc-per-node must be a positive integer, got 'two'"),
        (["--nodes", "0", "--nproc-per-node", "1", "-m", "x"], "--nodes must be a positive integer, got '0'"),
        (["--nodes", "2", "--nodes=3", "--nproc-per-node", "1", "-m", "x"], "--nodes is given twice"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "onebit.launch", *argv], capture_output=True, text=True)
        assert proc.returncode == 2 and why in proc.stderr, (argv, proc.stderr)
    argv = ["train", "--dataset", "fashion_mnist", "--stage-data", "scratch", "--out", str(tmp_path / "r")]
    proc = subprocess.run([sys.executable, "-m", "onebit.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2 and "a relative path would be on the shared file system" in proc.stderr, proc.stderr
    assert not (tmp_path / "r").exists()


def test_a_run_says_what_it_trains_how_far_it_is_and_where_its_results_are(tiny_fashion, tmp_path):
    """Feedback while it runs: a start banner (network, parameters, method, data, device,
    steps, output), per epoch the run's share done and its ETA, a closing line with the
    final error and where the results are; the CLI stamps each line with the time of day."""
    import re

    from helpers import tiny_cfg

    logs = []
    final = train(tiny_cfg(tiny_fashion), tmp_path / "r", log=logs.append)
    assert re.fullmatch(
        r"start: WRN-8-0\.25 \([\d,]+ parameters\), method fp32, tiny_fashion \(\d+ training / \d+ test images\), "
        r"cpu, \d+ threads; 3 epochs x \d+ steps of batch 32; output \S+",
        logs[0],
    ), logs[0]
    assert f"{final['params']:,} parameters" in logs[0] and str(tmp_path / "r") in logs[0]
    epochs = [line for line in logs if line.startswith("epoch ")]
    assert re.search(r"\| run 33% done, ETA \d+ s$", epochs[0]) and re.search(r"run 67% done, ETA", epochs[1])
    assert epochs[2].endswith("| run 100% done")
    took = train_mod.format_duration(final["wall_seconds"])
    assert logs[-1] == (
        f"done: test error {final['test_top1_err']:.2f}% after 3 epochs ({took} of epochs); "
        f"results in {tmp_path / 'r'} (final.json, metrics.jsonl)"
    )
    proc = run_cli(tiny_fashion, tmp_path / "cli")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in lines), lines
    assert " start: " in lines[0] and " done: test error " in lines[-1]


def test_progress_lines_in_logs_carry_the_runs_share_and_eta(capsys):
    p = train_mod.Progress(total=100, desc="epoch 2/4 train", enabled=True, every=0.0, done=25, epoch_steps=25)
    p.t0 -= 10.0  # ten seconds into this epoch
    p.update(4, 0.5, done=30)
    line = capsys.readouterr().out.strip()
    # 5 steps in 10 s: 70 steps left take 140 s
    assert line == "epoch 2/4 train: step 5/25 loss 0.5000 | run 30% done, ETA 2.3 min", line
    assert train_mod.format_duration(42) == "42 s" and train_mod.format_duration(7200) == "2.0 h"
