"""Property-based: any grid and any ``onebit train`` arguments either run (here:
pass ``--check``) or are refused with a message naming the problem, never a traceback."""

import re
import string

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onebit.cli import main
from onebit.grid import GridError, columns, jobs, load_grid, train_args

COLUMNS = columns()

VALID = {"row": "r1", "table": "t", "dataset": "fashion_mnist", "arch": "wrn", "depth": "8",
         "width": "1", "method": "fp32", "epochs": "1", "seeds": "0", "t0": "1", "tmult": "2",
         "batch_size": "16", "lr_max": "0.1", "weight_decay": "0.0005", "cutout": "0",
         "crop_pad": "0", "flip": "1", "train_subset": "", "test_subset": "", "paper_source": "",
         "paper_table": "", "paper_row": "", "gpus": "0", "mem_mb": "1000", "runtime": "10"}

numbers = st.one_of(st.integers(-3, 40).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                    st.sampled_from(["", "1e9", "0", "-0", "2.5", "20", "26", "1,2", "0x10", " 3", "inf", "-inf",
                                     "nan", "1e400", "-1e-9"]))
words = st.one_of(st.sampled_from(["fp32", "cl", "cl-strict", "w1", "nope", "wrn", "resnet18", "mlp",
                                   "fashion_mnist", "cifar10", "imagenet", "nodata", "a/b", ""]),
                  st.text(string.printable.replace("\t", "").replace("\n", "").replace("\r", ""),
                          max_size=8))
cell = st.one_of(numbers, words)


@st.composite
def grids(draw):
    rows = []
    for i in range(draw(st.integers(1, 3))):
        row = dict(VALID, row=f"r{i}")
        for col in draw(st.lists(st.sampled_from(sorted(COLUMNS)), max_size=4, unique=True)):
            row[col] = draw(cell)
        rows.append(row)
    df = pd.DataFrame(rows, dtype=str)
    if draw(st.booleans()) and draw(st.booleans()):
        df = df.drop(columns=[draw(st.sampled_from(sorted(df.columns)))])
    if draw(st.booleans()) and draw(st.booleans()):
        df["extra"] = "x"
    return df


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(df=grids())
def test_any_grid_is_accepted_whole_or_refused_with_file_row_and_field(df, tmp_path, capsys):
    path = tmp_path / "g.tsv"
    df.to_csv(path, sep="\t", index=False)
    try:
        grid = load_grid(path)
    except GridError as e:
        assert str(path) in str(e)
        return
    # accepted: every job's arguments pass the trainer's own validation
    for row_id, seed in jobs(grid):
        row = grid.set_index("row").loc[row_id].to_dict() | {"row": row_id}
        argv = ["train", *train_args(row, seed), "--out", str(tmp_path / "o"), "--check"]
        assert main(argv) == 0, capsys.readouterr().err


OPTIONS = ["--dataset", "--arch", "--method", "--depth", "--width", "--epochs", "--seed", "--batch-size",
           "--lr-max", "--lr-min", "--momentum", "--weight-decay", "--t0", "--tmult", "--crop-pad",
           "--cutout", "--train-subset", "--test-subset", "--eval-batch-size", "--workers"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(opts=st.lists(st.tuples(st.sampled_from(OPTIONS), cell), max_size=5))
def test_any_train_arguments_run_or_are_refused_with_a_message(opts, tmp_path, capsys):
    argv = ["train", "--out", str(tmp_path / "o"), "--check"]
    for name, value in opts:
        argv += [f"{name}={value}"]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: usage line and the option at fault
        code = e.code
    err = capsys.readouterr().err
    assert code in (0, 2)
    assert "Traceback" not in err
    if code == 2:
        assert "error:" in err


@pytest.mark.parametrize("field,value,message", [
    ("method", "nope", "known methods"), ("arch", "mlp", "known"), ("dataset", "nodata", "known"),
    ("depth", "9", "6n + 2"), ("width", "0", "positive"), ("batch_size", "-1", "positive"),
    ("epochs", "0", "positive"), ("seeds", "1,x", "integers"), ("width", "inf", "finite"),
])
def test_bad_grid_fields_are_named(tmp_path, field, value, message):
    path = tmp_path / "g.tsv"
    pd.DataFrame([dict(VALID, **{field: value})]).to_csv(path, sep="\t", index=False)
    with pytest.raises(GridError, match=re.escape(message)) as e:
        load_grid(path)
    assert "'r1'" in str(e.value) and field in str(e.value)


@pytest.mark.parametrize("arg,message", [
    ("--width=inf", "positive float"), ("--lr-max=nan", "positive float"), ("--momentum=1.5", "momentum"),
    ("--method=nope", "known methods"), ("--depth=9", "6n + 2"), ("--batch-size=0", "positive"),
    ("--dataset=nodata", "known"), ("--weight-decay=-1", "weight_decay"), ("--epochs=x", "epochs"),
])
def test_bad_train_arguments_are_named(arg, message, tmp_path, capsys):
    try:
        code = main(["train", "--out", str(tmp_path / "o"), "--check", arg])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
