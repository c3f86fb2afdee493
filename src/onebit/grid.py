"""Experiment grids: one validated table row per paper-table row.

A grid is a TSV under ``config/grids/``. Its columns are the fields of
:class:`Job` (what the pipeline needs to schedule a row and to place its results
in the report) and the fields of :class:`onebit.config.TrainConfig` (what the run
computes; ``seeds`` replaces ``seed``); ``config/README.md`` lists them all. An
empty cell, or a column left out, takes the field's default. Every problem is
reported before any job starts, naming the file, the row and the field.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from .config import ConfigError, TrainConfig, check_value, describe, kind_of, option, parse_text, to_argv
from .config import fields as run_fields
from .errors import GridError, UserError
from .slurm import check_extra

#: row ids name directories and reach shell lines: a safe alphabet and length
ROW_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,79}"


@dataclass
class Job:
    """The columns of a grid row beyond the run's own fields."""

    row: str = option(
        "",
        "unique id of the row, also its run directory's name: letters, digits and "
        ". _ + - (at most 80, starting with a letter or digit)",
        required=True,
        pattern=ROW_PATTERN,
    )
    table: str = option(
        "",
        "the table the row belongs to: a paper table (slide16, slide17, slide18, "
        "table1, table2) or baseline, peers, ablation, memory",
        required=True,
    )
    seeds: list = option(None, "seeds, one run each (comma-separated)", required=True)
    paper_source: Optional[str] = option(
        None, "published number of this row in config/published.tsv: its source (W2017, P2018)"
    )
    paper_table: Optional[str] = option(None, "... its table")
    paper_row: Optional[str] = option(None, "... its row")
    memory: Optional[str] = option(
        None, "the memory measurement of this row's network (a key of the grid's memory: entry in config/config.yaml)"
    )
    gpus: int = option(
        0,
        "GPUs of one job; more than 1 runs torchrun with one process per GPU "
        "(with device: cpu, that many CPU processes)",
        minimum=0,
    )
    nodes: int = option(
        1,
        "nodes of one job, each with the row's gpus, cpus and mem_mb (SLURM only: torchrun on every "
        "node under srun, one rendezvous; a local run refuses it); the global batch is the same",
        minimum=1,
        maximum=1024,
    )
    cpus: int = option(
        0,
        "CPU threads of one job (OMP_NUM_THREADS; on SLURM --cpus-per-task); 0: threads_per_job of config/config.yaml",
        minimum=0,
    )
    mem_mb: int = option(4000, "memory of one job, MB (SLURM --mem)", minimum=1)
    runtime: int = option(
        60,
        "wall time of one job, minutes (SLURM --time, at most slurm.max_runtime per job)",
        minimum=1,
        maximum=525_600,  # a year
    )
    gpu_model: Optional[str] = option(
        None, "SLURM: the GPU model of the row's GPUs (--gpus=<model>:N)", pattern=r"[A-Za-z0-9_.]+"
    )
    constraint: Optional[str] = option(
        None,
        "SLURM: node features the row's jobs need (--constraint, e.g. 80gb)",
        pattern=r"[A-Za-z0-9_.&|,:*()\[\]!-]+",
    )
    qos: Optional[str] = option(None, "SLURM: quality of service of the row's jobs (--qos)", pattern=r"[A-Za-z0-9_.-]+")
    slurm_extra: Optional[str] = option(
        None,
        "SLURM: extra sbatch flags of the row's jobs (after config slurm.extra), e.g. --exclusive "
        "--mail-type=END; not the flags the pipeline sets (time, memory, GPUs, partition...)",
    )


def job_fields() -> tuple:
    import dataclasses

    return dataclasses.fields(Job)


def columns() -> dict:
    """Every grid column -> (field, owner class), job columns first."""
    out = {f.name: (f, Job) for f in job_fields()}
    out.update({f.name: (f, TrainConfig) for f in run_fields() if f.metadata["grid"]})
    return out


RUN_COLUMNS = [f.name for f in run_fields() if f.metadata["grid"]]


def load_grid(path: "str | Path", check: bool = True, build: bool = True) -> pd.DataFrame:
    """Read a grid; returns one row per grid row (``seeds`` as lists), every column
    filled. With ``check`` (before any job), each row's names are looked up in the
    registries and, with ``build`` (which imports PyTorch), its model is built on the meta
    device; without ``check`` (reading the grid to join results), only types and bounds are
    checked, and no plugin is needed."""
    path = Path(path)
    where = f"grid {path}"
    try:
        # whole-line comments only: a '#' inside a cell is data (pandas' comment= would cut the row)
        lines = [
            line
            for line in path.read_text(encoding="utf-8-sig").splitlines(keepends=True)
            if not line.lstrip().startswith("#")
        ]
        raw = pd.read_csv(io.StringIO("".join(lines)), sep="\t", dtype=str, keep_default_na=False, index_col=False)
    except FileNotFoundError:
        raise GridError(f"{where} does not exist") from None
    except IsADirectoryError:
        raise GridError(f"{where} is a folder, not a grid file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise GridError(f"{where} is not a readable tab-separated table: {e}") from None
    for c in [c for c in raw.columns if str(c).startswith("Unnamed:")]:
        if (raw[c].str.strip() != "").any():
            raise GridError(f"{where}: a column without a name holds values (a tab too many in the header?)")
        raw = raw.drop(columns=c)  # a trailing tab at the end of every line
    cols = columns()
    missing = [c for c, (f, _) in cols.items() if f.metadata["required"] and c not in raw.columns]
    extra = [c for c in raw.columns if c not in cols]
    if missing or extra:
        raise GridError(
            f"{where}: "
            + "; ".join(
                ([f"missing columns {missing}"] if missing else []) + ([f"unknown columns {extra}"] if extra else [])
            )
            + f". The columns are: {', '.join(cols)} (config/README.md)"
        )
    if raw.empty:
        raise GridError(f"{where} has no rows")
    records = []
    for i, rec in raw.iterrows():
        rid = str(rec["row"]).strip() or f"(line {i + 2})"
        out = {}
        for col, (f, owner) in cols.items():
            here = f"{where}, row {rid!r}, field {col!r}"
            text = str(rec[col]).strip() if col in raw.columns else ""
            kind, optional = kind_of(f, owner)
            if not text:
                if f.metadata["required"]:
                    raise GridError(f"{here}: empty")
                out[col] = f.default
                continue
            try:
                value = parse_text(text, kind, optional)
                if check or not f.metadata["registry"]:
                    check_value(col, value, owner)

            except ConfigError as e:  # "width must be ...": the field is named once, in `here`
                raise GridError(f"{here}: {str(e).removeprefix(col + ' ')}") from None
            except ValueError:
                raise GridError(f"{here}: must be {describe(f, owner)}, got {text!r}") from None
            except KeyError as e:  # an unknown registry name: the message lists the known ones
                raise GridError(f"{here}: {e}") from None
            if col == "slurm_extra":
                try:
                    value = check_extra(value, here)
                except UserError as e:
                    raise GridError(str(e)) from None
            out[col] = value
        if check:
            try:  # what the job itself will check first: the config, and the model (on meta)
                run_config(out, out["seeds"][0]).validate(build=build)
            except (ValueError, KeyError) as e:
                field = getattr(e, "field", None)
                raise GridError(f"{where}, row {rid!r}" + (f", field {field!r}" if field else "") + f": {e}") from None
        records.append(out)
    grid = pd.DataFrame(records, dtype=object)  # keeps ints as ints next to empty cells
    dup = grid["row"][grid["row"].duplicated()].tolist()
    if dup:
        raise GridError(f"{where}: duplicate row ids {sorted(set(dup))}")
    return grid.set_index("row", drop=False)


def run_config(row: "pd.Series | dict", seed: int) -> TrainConfig:
    """The :class:`TrainConfig` of one grid row and seed."""
    return TrainConfig(seed=seed, **{c: row[c] for c in RUN_COLUMNS})


def train_args(row: "pd.Series | dict", seed: int) -> list[str]:
    """The ``onebit train`` arguments of one grid row and seed."""
    return to_argv({"seed": seed, **{c: row[c] for c in RUN_COLUMNS}})


def jobs(grid: pd.DataFrame) -> list[tuple[str, int]]:
    """(row id, seed) of every training job."""
    return [(r, s) for r, seeds in zip(grid["row"], grid["seeds"]) for s in seeds]


def workflow_path(path: "str | Path", root: "str | Path") -> Path:
    """A path of the workflow's config: as given where it exists (relative to the working
    directory), else relative to the workflow's repository ``root`` (its own grids, when the
    workflow runs from another directory as a Snakemake module)."""
    path = Path(path)
    if path.is_absolute() or path.exists() or not (Path(root) / path).exists():
        return path
    return Path(root) / path


@dataclass
class Workflow:
    """What the pipeline takes from its config, checked: the grid, and its measurements."""

    grid: pd.DataFrame
    grid_path: str
    published: str
    memory: dict
    fidelity: Optional[dict]
    claims: str = ""  # claims.yaml beside the published numbers


def check_workflow(config: dict, grid_name: str, root: "str | Path", build: bool = True) -> Workflow:
    """Check the pipeline's config for one grid before any job: the grid whole (its rows'
    names, plugins loaded, and, with ``build``, models built on the meta device), every memory
    measurement that reaches a job's command line (with ``build``, its network built as the
    job will build it), and the fidelity row and seed. Raises :class:`GridError` naming the
    setting, row and field. Without ``build`` it imports no PyTorch (unless a plugin does):
    :func:`check_networks` is the rest."""
    import re

    from .plugins import load_plugins

    if grid_name not in config["grids"]:
        raise GridError(f"unknown grid {grid_name!r}; known grids: {', '.join(config['grids'])}")
    load_plugins(",".join(config["plugins"]))
    grid_path = workflow_path(config["grids"][grid_name], root)
    grid = load_grid(grid_path, build=build)
    memory = config["memory"].get(grid_name, {})
    for name, spec in memory.items():
        try:  # what reaches the memory job's command line is checked here, before any job
            if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", spec.get("device", "cpu")):
                raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {spec['device']!r}")
            if "arch" not in spec:
                raise KeyError("arch")
        except (KeyError, ValueError, TypeError) as e:
            raise GridError(f"memory.{grid_name}.{name}: {e}") from None
    for row, name in grid["memory"].dropna().items():
        if name not in memory:
            raise GridError(
                f"grid {grid_name!r}, row {row!r}, field 'memory': {name!r} is not a memory "
                f"measurement of this grid (config memory.{grid_name}: {', '.join(memory) or 'none'})"
            )
    # a grid without a fidelity entry gets an empty fidelity table
    fidelity = config["fidelity"].get(grid_name)
    if fidelity and fidelity["row"] not in grid.index:
        raise GridError(f"fidelity: row {fidelity['row']!r} is not in grid {grid_name!r}")
    if fidelity and fidelity["seed"] not in grid.loc[fidelity["row"], "seeds"]:
        raise GridError(
            f"fidelity: seed {fidelity['seed']} is not a seed of row {fidelity['row']!r} "
            f"(its seeds: {grid.loc[fidelity['row'], 'seeds']})"
        )
    from .report.claims import claims_path, load_claims
    from .report.tables import load_published

    published = workflow_path(config["published"], root)
    try:
        load_claims(published, load_published(published))
    except OSError as e:
        raise GridError(
            f"published: cannot read {published} ({e.strerror or e}); config 'published' names "
            "the table of published numbers (config/published.tsv)."
        ) from None
    checked = Workflow(grid, str(grid_path), str(published), memory, fidelity, str(claims_path(published)))
    if build:
        check_networks(checked, grid_name)
    return checked


def check_networks(checked: Workflow, grid_name: str) -> None:
    """The part of :func:`check_workflow` that imports PyTorch: every row's model and every
    memory measurement's network built on the meta device, as their jobs will build them."""
    import torch

    from .models import create_model

    for rid, row in checked.grid.iterrows():
        try:
            run_config(row, row["seeds"][0]).validate()
        except (ValueError, KeyError) as e:
            field = getattr(e, "field", None)
            raise GridError(
                f"grid {checked.grid_path}, row {rid!r}" + (f", field {field!r}" if field else "") + f": {e}"
            ) from None
    for name, spec in checked.memory.items():
        try:
            kw = {k: spec[k] for k in ("depth", "width") if k in spec}
            with torch.device("meta"):  # the network is built as the job will build it
                create_model(spec["arch"], "fp32", in_channels=spec.get("in_channels", 3), **kw)
        except (KeyError, ValueError, TypeError) as e:
            raise GridError(f"memory.{grid_name}.{name}: {e}") from None
