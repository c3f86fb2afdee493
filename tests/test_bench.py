"""``onebit bench`` at tiny sizes on the CPU (the same code a GPU runs), and its
correctness check failing when a method is broken."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from onebit.cli import main
from onebit.grid import load_grid
from onebit.measure.bench import check_method, sizes

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_runs_every_part_at_tiny_sizes(tiny_fashion, tmp_path, capsys):
    """The command as a user runs it, on a copy of a grid, including writing the
    measured runtime into it (the training part on the tests' small Fashion-MNIST copy)."""
    grid = tmp_path / "smoke.tsv"
    shutil.copy(REPO / "config/grids/smoke.tsv", grid)
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "--device",
                "cpu",
                "--method",
                "fp32,w1,cl,cl-strict,bnn",
                "--grid",
                str(grid),
                "--data-root",
                str(tiny_fashion),
                "--train-dataset",
                "tiny_fashion",
                "--output",
                str(out),
                "--write-runtime",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    for title in ("1. Correctness", "2. Speed and memory", "3. Cost of the grid", "4. Real training"):
        assert title in text
    r = json.loads(out.read_text())
    assert {x["method"] for x in r["check"]} == {"fp32", "w1", "cl", "cl-strict", "bnn"}
    assert all(x["ok"] is not False for x in r["check"])
    speed = {x["method"]: x for x in r["speed"]}
    assert speed["fp32"]["step_ratio_vs_fp32"] == 1 and speed["cl-strict"]["peak_ratio_vs_fp32"] > 1.2
    assert all(x["images_per_s"] > 0 and x["largest_batch"] >= 1 for x in r["speed"])
    assert speed["cl-strict"]["largest_batch"] > speed["fp32"]["largest_batch"]
    assert [x["row"] for x in r["cost"]] == list(load_grid(grid)["row"])
    assert all(x["gpu_hours"] > 0 and x["runtime_minutes"] % 30 == 0 for x in r["cost"])
    assert list(load_grid(grid)["runtime"]) == [x["runtime_minutes"] for x in r["cost"]]
    assert "measured by onebit bench on" in grid.read_text()
    assert [x["method"] for x in r["train"]] == ["fp32", "w1", "cl", "w1+cl"]
    assert all(len(x["test_err_per_epoch"]) == x["epochs"] for x in r["train"])


def test_correctness_check_catches_a_layout_bug(monkeypatch):
    """A broken method must fail the check: here the packed 1-bit copy of a channels-last
    activation is unpacked as if it were NCHW."""
    import onebit.ops.functional as F

    s = sizes(torch.device("cpu"))
    assert all(r["ok"] for r in check_method("cl", torch.device("cpu"), s))
    monkeypatch.setattr(F, "is_channels_last", lambda t: False)
    rows = {r["variant"]: r for r in check_method("cl", torch.device("cpu"), s)}
    assert rows["fp32"]["ok"] and not rows["channels_last"]["ok"]


def test_bench_refuses_unknown_parts_and_methods(capsys):
    assert main(["bench", "--parts", "check,nope"]) == 2
    assert "unknown part" in capsys.readouterr().err
    assert main(["bench", "--method", "nope", "--parts", "check"]) == 2
    assert "known methods" in capsys.readouterr().err


@pytest.mark.gpu
def test_every_method_on_cuda_matches_the_cpu():
    dev = torch.device("cuda")
    s = sizes(dev)
    from onebit import list_methods

    for m in list_methods():
        for r in check_method(m, dev, s):
            assert r["ok"] is not False, r


def test_a_row_of_unknown_size_is_refused_before_any_step_is_timed(tiny_fashion, tmp_path, monkeypatch):
    """The cost of a row needs its number of training images: a dataset that does not say
    (train_images 0) and a row without train_subset are refused before the bench times a step."""
    import onebit.measure.bench as bench
    from onebit.errors import UserError

    timed = []
    monkeypatch.setattr(bench, "_step_time", lambda *a, **k: timed.append(a) or 0.01)
    grid = tmp_path / "g.tsv"
    head = "row\ttable\tdataset\tarch\tdepth\twidth\tmethod\tepochs\tseeds\tbatch_size\ttrain_subset\n"
    grid.write_text(
        head
        + "a\tt\tfashion_mnist\twrn\t8\t0.25\tfp32\t1\t0\t32\t\nb\tt\ttiny_fashion\twrn\t8\t0.25\tfp32\t1\t0\t32\t\n"
    )
    with pytest.raises(UserError, match=r"row 'b': dataset 'tiny_fashion' does not say how many training images"):
        bench.cost(grid, torch.device("cpu"), sizes(torch.device("cpu")), log=lambda *_: None)
    assert timed == []
    grid.write_text(head + "b\tt\ttiny_fashion\twrn\t8\t0.25\tfp32\t1\t0\t32\t64\n")  # train_subset: known
    rows = bench.cost(grid, torch.device("cpu"), sizes(torch.device("cpu")), log=lambda *_: None)
    assert len(timed) == 1 and len(rows) == 1
