"""Scenarios of the second adversarial pass that once failed: each now ends in a clear
refusal (the file named, nothing already there lost) or in the right result."""

import os
import subprocess
import sys

import pytest

from onebit.grid import GridError, load_grid
from onebit.runio import RunLock, close_inherited_locks, fault_point, remove_stale_temporaries
from onebit.train import train

from test_reliability import tiny_cfg

HEAD = "row\ttable\tdataset\tarch\tdepth\twidth\tbatch_size\tlr_max\tmethod\tepochs\tseeds\tpaper_row\n"


def test_grid_hash_inside_a_cell_is_data_and_trailing_tabs_are_ignored(tmp_path):
    tsv = tmp_path / "g.tsv"
    tsv.write_text("# a whole-line comment\n" + HEAD.replace("\n", "\t\n")
                   + "r1\tt\tfashion_mnist\twrn\t8\t1\t32\t0.1\tfp32\t1\t0\tWRN 20-10 #2\t\n"
                   + "  # an indented comment\n")
    grid = load_grid(tsv, check=False)
    assert list(grid.index) == ["r1"] and grid.loc["r1", "paper_row"] == "WRN 20-10 #2"
    assert not [c for c in grid.columns if str(c).startswith("Unnamed")]


def test_grid_refuses_a_folder_and_values_under_a_nameless_column(tmp_path):
    with pytest.raises(GridError, match="is a folder"):
        load_grid(tmp_path)
    tsv = tmp_path / "g.tsv"
    tsv.write_text(HEAD.replace("\n", "\t\n") + "r1\tt\tfashion_mnist\twrn\t8\t1\t32\t0.1\tfp32\t1\t0\tp\tstray\n")
    with pytest.raises(GridError, match="column without a name"):
        load_grid(tsv, check=False)


def test_width_that_gives_no_channels_is_a_config_error():
    from onebit import create_model
    from onebit.config import ConfigError

    with pytest.raises(ConfigError, match="0 channels"):
        create_model("wrn", "fp32", depth=8, width=0.01)
    assert create_model("wrn", "fp32", depth=8, width=1 / 16) is not None  # the smallest width that works


def test_a_corrupt_jpeg_is_named_even_from_a_loader_worker(tiny_imagenet, tmp_path, capsys):
    from onebit.cli import main

    bad = sorted((tiny_imagenet / "imagenet" / "train").rglob("*.JPEG"))[3]
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code = main(["train", "--dataset", "tiny_imagenet", "--data-root", str(tiny_imagenet), "--depth", "8",
                 "--width", "0.25", "--batch-size", "4", "--epochs", "1", "--workers", "2",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 3 and str(bad) in err and "cannot be read as an image" in err and "Traceback" not in err


def test_train_refuses_an_out_that_is_not_a_run_and_keeps_it(tiny_fashion, tmp_path, capsys):
    from onebit.cli import main

    common = ["train", "--dataset", "tiny_fashion", "--data-root", str(tiny_fashion), "--depth", "8",
              "--width", "0.25", "--batch-size", "32", "--epochs", "1"]
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("years of work")
    afile = tmp_path / "notes.txt"
    afile.write_text("notes")
    for out, says in ((folder, "not part of a onebit run"), (afile, "is a file")):
        for check in ([], ["--check"]):
            assert main([*common, *check, "--out", str(out)]) == 2
            assert says in capsys.readouterr().err
    assert (folder / "chapter1.tex").read_text() == "years of work" and sorted(os.listdir(folder)) == ["chapter1.tex"]
    assert afile.read_text() == "notes"


def test_a_damaged_config_json_is_named_not_overwritten(tiny_fashion, tmp_path, capsys):
    from onebit.cli import main

    run = tmp_path / "run"
    train(tiny_cfg(tiny_fashion, epochs=1), run, log=lambda *_: None)
    (run / "final.json").unlink()
    (run / "config.json").write_text("{ half a json")
    args = ["train", "--dataset", "tiny_fashion", "--data-root", str(tiny_fashion), "--depth", "8", "--width",
            "0.25", "--batch-size", "32", "--epochs", "1", "--lr-max", "0.05", "--out", str(run)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{run / 'config.json'} is damaged" in err and (run / "config.json").read_text() == "{ half a json"


def test_outputs_never_overwrite_a_plugin_file(tiny_fashion, tmp_path, capsys):
    from onebit.cli import main

    train(tiny_cfg(tiny_fashion, method="w1", epochs=1), tmp_path / "r", log=lambda *_: None)
    plugin = tmp_path / "my_method.py"
    plugin.write_text("X = 1  # a user's plugin\n")
    assert main(["--plugins", str(plugin), "export", str(tmp_path / "r" / "checkpoint.pt"), "-o", str(plugin)]) == 2
    assert "also an input" in capsys.readouterr().err and plugin.read_text() == "X = 1  # a user's plugin\n"


def test_a_plugin_that_exits_is_named(tmp_path, capsys):
    from onebit.cli import main

    plugin = tmp_path / "quits.py"
    plugin.write_text("raise SystemExit(0)\n")
    assert main(["--plugins", str(plugin), "methods"]) == 2
    assert "quits.py failed while loading (SystemExit" in capsys.readouterr().err


def test_export_writes_atomically_with_the_usual_file_mode(tiny_fashion, tmp_path, capsys):
    from onebit.cli import main

    train(tiny_cfg(tiny_fashion, method="w1", epochs=1), tmp_path / "r", log=lambda *_: None)
    old = os.umask(0o022)
    try:
        out = tmp_path / "packed" / "model.pt"  # a missing folder is created
        assert main(["export", str(tmp_path / "r" / "checkpoint.pt"), "-o", str(out)]) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644 and os.listdir(out.parent) == ["model.pt"]
    (tmp_path / "afile").write_text("x")
    assert main(["export", str(tmp_path / "r" / "checkpoint.pt"), "-o", str(tmp_path / "afile" / "m.pt")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


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
        probe = ("import sys; from onebit.runio import RunLock, RunLocked\n"
                 f"try:\n    RunLock({str(folder)!r}).__enter__()\nexcept RunLocked:\n    sys.exit(1)")
        held = subprocess.run([sys.executable, "-c", probe], timeout=60).returncode == 1
        assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the child ended before the probe"
        return held
    finally:
        os.close(done_w)
        os.close(ready_r)
        os.waitpid(pid, 0)


def test_a_forked_worker_does_not_keep_the_run_lock(tmp_path):
    """A DataLoader worker outliving a crashed trainer must not block the next trainer."""
    assert not _lock_held_while_a_forked_child_lives(tmp_path, child_closes_locks=True), \
        "the lock was still held by the forked child"


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
    args = ["train", "--dataset", "tiny_fashion", "--data-root", str(tiny_fashion), "--depth", "8", "--width",
            "0.25", "--batch-size", "32", "--epochs", "1", "--lr-max", "0.05", "--method", "fp32",
            "--out", str(tmp_path / "a")]
    for check in (["--check"], []):
        assert main([*args, *check]) == 2
        assert "holds the state of a run of another configuration" in capsys.readouterr().err


def test_training_refuses_an_image_tree_with_the_wrong_classes(tiny_imagenet, tmp_path, capsys):
    import shutil

    from onebit.cli import main

    shutil.rmtree(sorted((tiny_imagenet / "imagenet" / "train").iterdir())[0])
    code = main(["train", "--dataset", "tiny_imagenet", "--data-root", str(tiny_imagenet), "--depth", "8",
                 "--width", "0.25", "--batch-size", "4", "--epochs", "1", "--workers", "0",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 3 and "holds 2 class folders, 3 expected" in err


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
