"""One schema per run: the dataclass, the CLI, the grid columns and the JSON schema
Snakemake validates grid rows against agree field by field, and the generated
files are current."""

import argparse
import dataclasses
import math

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from onebit.cli import build_parser
from onebit.config import ConfigError, TrainConfig, check_value, fields, kind_of, to_argv
from onebit.grid import Job, columns, load_grid, run_config
from onebit.schema import GRID_SCHEMA, REPO, generated, grid_schema


def train_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def test_generated_files_are_current():
    for path, text in generated().items():
        assert (REPO / path).read_text() == text, f"{path} is stale: run python -m onebit.schema"


def test_cli_has_every_field_with_its_default():
    actions = {a.dest: a for a in train_parser()._actions}
    for f in fields():
        a = actions[f.name]
        assert "--" + f.name.replace("_", "-") in a.option_strings
        assert a.default == f.default, f.name
        assert f.metadata["help"] in a.help
    assert set(actions) - {f.name for f in fields()} == {"help", "debug", "out", "check"}


def test_grid_columns_are_the_job_and_run_fields():
    cols = columns()
    job = [f.name for f in dataclasses.fields(Job)]
    run = [f.name for f in fields() if f.metadata["grid"]]
    assert list(cols) == job + run
    # what a grid cannot set, the pipeline sets for every job (seeds replace seed)
    assert {f.name for f in fields()} - set(run) == {"seed", "data_root", "stage_data", "device", "gpus"}
    schema = yaml.safe_load((REPO / GRID_SCHEMA).read_text())
    assert list(schema["properties"]) == list(cols) and schema["required"] == list(cols)
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("name", [f.name for f in fields() if f.metadata["grid"]])
def test_json_schema_matches_the_field(name):
    f = next(f for f in fields() if f.name == name)
    prop = grid_schema()["properties"][name]
    kind, optional = kind_of(f)
    json_type = {int: "integer", float: "number", bool: "boolean", str: "string"}[kind]
    assert prop["type"] == ([json_type, "null"] if optional else json_type)
    for key, schema_key in (
        ("minimum", "minimum"),
        ("exclusive_minimum", "exclusiveMinimum"),
        ("maximum", "maximum"),
        ("exclusive_maximum", "exclusiveMaximum"),
    ):
        assert prop.get(schema_key) == f.metadata[key]


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 300),
    st.floats(allow_nan=True),
    st.sampled_from(["", "x", "fp32", "wrn", "cifar10", "0.5"]),
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from([f.name for f in fields() if f.metadata["grid"]]), value=values)
def test_check_value_and_json_schema_agree(name, value):
    """The validation of a field and the JSON schema generated from it accept the same
    values (registry names are checked by the validation only)."""
    f = next(f for f in fields() if f.name == name)
    try:
        check_value(name, value)
        ok = True
    except (ConfigError, KeyError):
        ok = False
    prop = grid_schema()["properties"][name]
    try:
        jsonschema.validate(value, prop)
        schema_ok = True
    except jsonschema.ValidationError:
        schema_ok = False
    if isinstance(value, float) and not math.isfinite(value) and kind_of(f)[0] is float:
        assert not ok  # JSON cannot hold nan/inf: the loader refuses them before the schema
        return
    if f.metadata["registry"] and isinstance(value, str) and value:
        assert schema_ok
        return
    if isinstance(value, float) and kind_of(f)[0] is int and value.is_integer():
        assert not ok  # JSON counts 1.0 as an integer; the grid loader turns "1.0" into 1 first
        return
    if isinstance(value, bool) and kind_of(f)[0] in (int, float):
        assert not ok  # True is not 1 here; the schema gives booleans their own type
        return
    assert ok == schema_ok, (name, value)


def test_every_field_travels_from_grid_to_run_config(tmp_path):
    """A grid row setting every run column reaches TrainConfig unchanged, through the
    command line the pipeline builds."""
    changed = dict(
        dataset="fashion_mnist",
        arch="wrn",
        method="cl",
        depth=14,
        width=1.5,
        epochs=3,
        batch_size=32,
        lr_max=0.05,
        lr_min=0.001,
        momentum=0.8,
        weight_decay=0.0001,
        t0=2,
        tmult=3,
        momentum_reset=False,
        flip=False,
        crop_pad=2,
        cutout=8,
        cutout_style="devries",
        train_subset=100,
        test_subset=50,
        fp32_first_last=True,
        bn_affine=True,
        bn_reestimate=False,
        pool_count_pad=True,
        amp=True,
        workers=2,
        compile=True,
        eval_batch_size=64,
    )
    assert set(changed) == {f.name for f in fields() if f.metadata["grid"]}
    for name, value in changed.items():  # arch: the only other model (resnet18) ignores depth/width
        assert name == "arch" or value != getattr(TrainConfig(), name), f"{name}: pick a non-default value"
    head = ["row", "table", "seeds", *changed]
    text = (
        "\t".join(head)
        + "\n"
        + "\t".join(["r", "t", "7"] + [str(int(v)) if isinstance(v, bool) else str(v) for v in changed.values()])
        + "\n"
    )
    (tmp_path / "g.tsv").write_text(text)
    row = load_grid(tmp_path / "g.tsv").iloc[0]
    cfg = run_config(row, 7)
    assert dataclasses.asdict(cfg) == {**dataclasses.asdict(TrainConfig()), **changed, "seed": 7}
    args = train_parser().parse_args([*to_argv(dataclasses.asdict(cfg)), "--out", "x"])
    assert all(getattr(args, k) == v for k, v in dataclasses.asdict(cfg).items())


def test_identity_leaves_out_runtime_fields_only():
    runtime = {f.name for f in fields() if f.metadata["runtime"]}
    assert runtime == {"data_root", "stage_data", "device", "gpus", "workers", "compile", "eval_batch_size"}
    assert set(TrainConfig().identity()) == {f.name for f in fields()} - runtime


def test_a_bug_in_a_model_builder_is_not_blamed_on_the_sizes():
    """A builder's own RuntimeError (a shape bug) reaches the user as the bug it is, not as
    "choose a smaller width or depth" (exit 2)."""
    from onebit.config import TrainConfig
    from onebit.errors import UserError
    from onebit.models import MODELS, register_model

    def buggy(num_classes=10, in_channels=1, method=None, **kw):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)")

    register_model("buggy_rt", buggy)
    try:
        with pytest.raises(RuntimeError, match="mat1 and mat2") as e:
            TrainConfig(dataset="fashion_mnist", arch="buggy_rt").build_model(meta=True)
        assert not isinstance(e.value, UserError) and "smaller width" not in str(e.value)
    finally:
        MODELS.unregister("buggy_rt")
