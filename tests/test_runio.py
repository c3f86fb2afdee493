"""onebit.runio: verified checkpoints, the run lock, stale temporaries, the fault hook."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import assert_same_run, comparable, corrupt, tiny_cfg
from onebit.runio import (
    CorruptCheckpoint,
    RunLock,
    RunLocked,
    close_inherited_locks,
    fault_point,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from onebit.train import train


@pytest.mark.slow
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


def test_a_second_trainer_on_the_same_run_is_refused(tiny_fashion, tmp_path, capsys):
    from onebit.cli import main

    run = tmp_path / "run"
    run.mkdir()
    with RunLock(run):  # a live holder, as another process would be
        with pytest.raises(RunLocked, match="another onebit process"):
            RunLock(run).__enter__()
        argv = [
            "train",
            "--dataset",
            "tiny_fashion",
            "--data-root",
            str(tiny_fashion),
            "--depth",
            "8",
            "--width",
            "0.25",
            "--epochs",
            "1",
            "--out",
            str(run),
        ]
        assert main(argv) == 2
        assert f"pid {os.getpid()}" in capsys.readouterr().err
    assert main(argv) == 0  # released: the run proceeds


def test_stale_temporaries_are_removed_by_the_lock_holder(tiny_fashion, tmp_path):
    run = tmp_path / "run"
    train(tiny_cfg(tiny_fashion, epochs=1), run, log=lambda *_: None)
    (run / ".final.json.k3j2.tmp").write_bytes(b"half")
    (run / "checkpoint.pt.new").write_bytes(b"half")
    assert sorted(remove_stale_temporaries(run)) == [".final.json.k3j2.tmp", "checkpoint.pt.new"]
    assert not list(run.glob("*.tmp")) + list(run.glob(".*.tmp")) + list(run.glob("*.new"))
    assert (run / "final.json").exists() and (run / "checkpoint.pt").exists()


def _lock_held_while_a_forked_child_lives(folder, child_closes_locks: bool) -> bool:
    """Take the run lock, fork a child (as a DataLoader worker is forked), release the lock in
    the parent, and probe it from a third process while the child is surely alive: the child
    waits on a pipe that the parent closes only after the probe (no sleep to outlast)."""
    lock = RunLock(folder).__enter__()
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: what worker_init_fn does (or not), then live until told
        os.close(ready_r)
        os.close(done_w)
        if child_closes_locks:
            close_inherited_locks()
        os.write(ready_w, b"1")
        os.read(done_r, 1)  # returns when the parent closes its end
        os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        assert os.read(ready_r, 1) == b"1"
        lock.__exit__(None, None, None)
        probe = (
            "import sys; from onebit.runio import RunLock, RunLocked\n"
            f"try:\n    RunLock({str(folder)!r}).__enter__()\nexcept RunLocked:\n    sys.exit(1)"
        )
        held = subprocess.run([sys.executable, "-c", probe], timeout=60).returncode == 1
        assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the child ended before the probe"
        return held
    finally:
        os.close(done_w)
        os.close(ready_r)
        os.waitpid(pid, 0)


def test_a_forked_worker_does_not_keep_the_run_lock(tmp_path):
    """A DataLoader worker outliving a crashed trainer must not block the next trainer."""
    assert not _lock_held_while_a_forked_child_lives(tmp_path, child_closes_locks=True), (
        "the lock was still held by the forked child"
    )


def test_a_malformed_fault_hook_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("ONEBIT_FAULT", "epoch:often")
    with pytest.raises(ValueError, match="POINT:N"):
        fault_point("epoch")


def test_inherited_lock_would_block_without_closing(tmp_path):
    """The control for the worker test: a child that keeps the inherited descriptor does
    hold the lock after the parent releases it (so the test above can fail)."""
    assert _lock_held_while_a_forked_child_lives(tmp_path, child_closes_locks=False)


def test_check_refuses_a_checkpoint_of_another_run_as_training_does(tiny_fashion, tmp_path, capsys):
    import shutil

    from onebit.cli import main

    train(tiny_cfg(tiny_fashion, method="fp32", epochs=1), tmp_path / "a", log=lambda *_: None)
    train(tiny_cfg(tiny_fashion, method="w1", epochs=1), tmp_path / "b", log=lambda *_: None)
    (tmp_path / "a" / "final.json").unlink()
    shutil.copy(tmp_path / "b" / "checkpoint.pt", tmp_path / "a" / "checkpoint.pt")
    args = [
        "train",
        "--dataset",
        "tiny_fashion",
        "--data-root",
        str(tiny_fashion),
        "--depth",
        "8",
        "--width",
        "0.25",
        "--batch-size",
        "32",
        "--epochs",
        "1",
        "--lr-max",
        "0.05",
        "--method",
        "fp32",
        "--out",
        str(tmp_path / "a"),
    ]
    for check in (["--check"], []):
        assert main([*args, *check]) == 2
        assert "holds the state of a run of another configuration" in capsys.readouterr().err


def test_a_damaged_only_checkpoint_says_the_run_restarts(tiny_fashion, tmp_path):
    run = tmp_path / "run"
    train(tiny_cfg(tiny_fashion, epochs=1), run, log=lambda *_: None)
    (run / "final.json").unlink()
    assert not (run / "checkpoint.pt.prev").exists()
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    said = []
    train(tiny_cfg(tiny_fashion, epochs=1), run, log=said.append)
    warning = [s for s in said if "WARNING" in s]
    assert warning and "restarting the run from epoch 0" in warning[0] and "previous" not in warning[0]
