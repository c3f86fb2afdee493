"""onebit.runschema: the run-directory contract that collect enforces (docs/run-directory.md)."""

import json

import pytest

from helpers import tiny_cfg
from onebit.errors import InconsistentRun
from onebit.runschema import SCHEMAS, VERSION, check_run
from onebit.train import train


def _write(run, final, lines, env=None):
    run.mkdir(parents=True)
    (run / "final.json").write_text(json.dumps(final))
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if env is not None:
        (run / "env.json").write_text(json.dumps(env))


MINIMAL = (
    {"epochs_done": 1, "test_top1_err": 12.5},
    [{"epoch": 1, "split": "train", "top1_err": 20.0}, {"epoch": 1, "split": "test", "top1_err": 12.5}],
)


def test_a_run_written_by_onebit_train_keeps_the_contract(tiny_fashion, tmp_path):
    train(tiny_cfg(tiny_fashion, epochs=1), tmp_path / "r", log=lambda *_: None)
    final, lines, env = check_run(tmp_path / "r")
    assert final["epochs_done"] == 1 and len(lines) == 2 and env["device"] == "cpu"
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    from jsonschema import Draft202012Validator

    assert not list(Draft202012Validator(SCHEMAS["config.json"]).iter_errors(config))
    assert all(s["$id"].startswith(f"onebit/run-directory/v{VERSION}/") for s in SCHEMAS.values())


def test_the_least_a_producer_writes_is_collected(tmp_path):
    """A user's own script writes final.json and metrics.jsonl with the required fields only
    (no env.json, no timings): collect takes it, epoch time 0, provenance empty."""
    import pandas as pd

    from onebit.grid import load_grid
    from onebit.report.tables import tidy_metrics

    run = tmp_path / "runs" / "ext" / "seed0"
    _write(run, *MINIMAL)
    assert check_run(run)[2] == {}
    grid_tsv = tmp_path / "g.tsv"
    grid_tsv.write_text("row\ttable\tdataset\tarch\tmethod\tepochs\tseeds\next\tt\tfashion_mnist\twrn\tfp32\t1\t0\n")
    metrics = tidy_metrics([run / "final.json"], load_grid(grid_tsv, check=False))
    assert list(metrics["top1_err"]) == [20.0, 12.5] and (metrics["epoch_seconds"] == 0).all()
    assert metrics["device"].isna().all() and isinstance(metrics, pd.DataFrame)


@pytest.mark.parametrize(
    "final, lines, env, said",
    [
        ({"epochs_done": 1}, MINIMAL[1], None, r"final.json: the object: 'test_top1_err' is a required property"),
        ({**MINIMAL[0], "test_top1_err": 120}, MINIMAL[1], None, r"final.json: field test_top1_err: 120 is greater"),
        (
            MINIMAL[0],
            [MINIMAL[1][0], {"epoch": 1, "split": "val", "top1_err": 12.5}],
            None,
            r"metrics.jsonl, line 2: field split: 'val' is not one of \['train', 'test'\]",
        ),
        (
            MINIMAL[0],
            [{"epoch": "1", "split": "train", "top1_err": 20.0}, MINIMAL[1][1]],
            None,
            r"metrics.jsonl, line 1: field epoch: '1' is not of type 'integer'",
        ),
        (*MINIMAL, {"git_dirty": "yes"}, r"env.json: field git_dirty: 'yes' is not of type 'boolean', 'null'"),
    ],
)
def test_a_violation_is_named_by_file_line_and_field(tmp_path, final, lines, env, said):
    run = tmp_path / "run"
    _write(run, final, lines, env)
    with pytest.raises(InconsistentRun, match=said) as e:
        check_run(run)
    assert "docs/run-directory.md" in str(e.value)


def test_lines_that_are_not_json_are_named(tmp_path):
    run = tmp_path / "run"
    _write(run, *MINIMAL)
    (run / "metrics.jsonl").write_text('{"epoch": 1, "split": "train", "top1_err": 2}\n{"epoch": 1,\n')
    with pytest.raises(InconsistentRun, match=r"metrics.jsonl, line 2: not JSON"):
        check_run(run)
    (run / "metrics.jsonl").unlink()
    with pytest.raises(InconsistentRun, match=r"metrics.jsonl: missing"):
        check_run(run)
