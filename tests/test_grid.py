"""onebit.grid: reading and validating grids (any grid loads whole or is refused with its
file, row and field)."""

import re

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import cell
from onebit.cli import main
from onebit.grid import GridError, columns, jobs, load_grid, train_args

HEAD = "row\ttable\tdataset\tarch\tdepth\twidth\tbatch_size\tlr_max\tmethod\tepochs\tseeds\tpaper_row\n"


def test_grid_hash_inside_a_cell_is_data_and_trailing_tabs_are_ignored(tmp_path):
    tsv = tmp_path / "g.tsv"
    tsv.write_text(
        "# a whole-line comment\n"
        + HEAD.replace("\n", "\t\n")
        + "r1\tt\tfashion_mnist\twrn\t8\t1\t32\t0.1\tfp32\t1\t0\tWRN 20-10 #2\t\n"
        + "  # an indented comment\n"
    )
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


COLUMNS = columns()


VALID = {
    "row": "r1",
    "table": "t",
    "dataset": "fashion_mnist",
    "arch": "wrn",
    "depth": "8",
    "width": "1",
    "method": "fp32",
    "epochs": "1",
    "seeds": "0",
    "t0": "1",
    "tmult": "2",
    "batch_size": "16",
    "lr_max": "0.1",
    "weight_decay": "0.0005",
    "cutout": "0",
    "crop_pad": "0",
    "flip": "1",
    "train_subset": "",
    "test_subset": "",
    "paper_source": "",
    "paper_table": "",
    "paper_row": "",
    "gpus": "0",
    "mem_mb": "1000",
    "runtime": "10",
}


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


@pytest.mark.slow
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


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("method", "nope", "known methods"),
        ("arch", "mlp", "known"),
        ("dataset", "nodata", "known"),
        ("depth", "9", "6n + 2"),
        ("width", "0", "positive"),
        ("batch_size", "-1", "positive"),
        ("epochs", "0", "positive"),
        ("seeds", "1,x", "integers"),
        ("width", "inf", "finite"),
        ("gpu_model", "a100:2", "matching"),
        ("constraint", "80gb;reboot", "matching"),
        ("qos", "high prio", "matching"),
        ("slurm_extra", "--time=10", "row's runtime"),
        ("slurm_extra", "--partition=big", "slurm_partition"),
        ("slurm_extra", "--exclusive;id", "shell characters"),
    ],
)
def test_bad_grid_fields_are_named(tmp_path, field, value, message):
    path = tmp_path / "g.tsv"
    pd.DataFrame([dict(VALID, **{field: value})]).to_csv(path, sep="\t", index=False)
    with pytest.raises(GridError, match=re.escape(message)) as e:
        load_grid(path)
    assert "'r1'" in str(e.value) and field in str(e.value)


def test_a_rows_slurm_settings_are_read(tmp_path):
    path = tmp_path / "g.tsv"
    cells = dict(gpu_model="a100", constraint="80gb&ib", qos="long", slurm_extra=" --exclusive  --mail-type=END ")
    pd.DataFrame([dict(VALID, **cells), dict(VALID, row="r2")]).to_csv(path, sep="\t", index=False)
    grid = load_grid(path)
    assert grid.loc["r1", ["gpu_model", "constraint", "qos", "slurm_extra"]].tolist() == [
        "a100", "80gb&ib", "long", "--exclusive --mail-type=END"
    ]  # fmt: skip
    assert grid.loc["r2", ["gpu_model", "constraint", "qos", "slurm_extra"]].isna().all()
