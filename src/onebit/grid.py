"""Experiment grids: one validated table row per paper-table row.

A grid is a TSV under ``config/grids/`` with exactly :data:`COLUMNS`. Every
problem is reported before any job starts, naming the file, the row and the
field: unknown method / model / dataset (with the known ones), a depth the
architecture does not allow, non-positive sizes, missing or extra columns,
duplicate row ids, seeds that are not integers.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

#: column -> (kind, required). kind: str, int, float, seeds; required=False allows an empty cell
COLUMNS = {
    "row": ("str", True),           # unique id, also the run directory name
    "table": ("str", True),         # the paper table the row belongs to (slide16, slide18, ...)
    "dataset": ("str", True),
    "arch": ("str", True),
    "depth": ("int", False),        # WRN only
    "width": ("float", False),      # WRN only
    "method": ("str", True),
    "epochs": ("int", True),
    "seeds": ("seeds", True),       # comma-separated integers
    "t0": ("int", True),
    "tmult": ("int", True),
    "batch_size": ("int", True),
    "lr_max": ("float", True),
    "weight_decay": ("float", True),
    "cutout": ("int", True),
    "crop_pad": ("int", True),      # random-fill padding before the random crop (0: no crop)
    "flip": ("int", True),          # 1: random horizontal flips
    "train_subset": ("int", False),
    "test_subset": ("int", False),
    "paper_source": ("str", False),  # key into the published numbers: source, table, row
    "paper_table": ("str", False),
    "paper_row": ("str", False),
    "gpu": ("int", True),           # GPUs the job needs (0 or 1)
    "mem_mb": ("int", True),
    "runtime": ("int", True),       # minutes
}
POSITIVE = {"depth", "width", "epochs", "t0", "tmult", "batch_size", "lr_max", "train_subset",
            "test_subset", "mem_mb", "runtime"}
NON_NEGATIVE = {"weight_decay", "cutout", "crop_pad", "gpu"}


class GridError(ValueError):
    """A grid that cannot run; the message names file, row and field."""


def _parse(kind: str, text: str):
    if kind == "int":
        f = float(text)
        if not f.is_integer():
            raise ValueError(f"expected an integer, got {text!r}")
        return int(f)
    if kind == "float":
        v = float(text)
        if not math.isfinite(v):
            raise ValueError(f"expected a finite number, got {text!r}")
        return v
    if kind == "seeds":
        seeds = [s.strip() for s in text.split(",")]
        out = []
        for s in seeds:
            if not s.lstrip("-").isdigit():
                raise ValueError(f"seeds must be comma-separated integers, got {text!r}")
            out.append(int(s))
        if len(set(out)) != len(out):
            raise ValueError(f"repeated seed in {text!r}")
        return out
    return text


def load_grid(path: "str | Path") -> pd.DataFrame:
    """Read and validate a grid; returns one row per grid row (``seeds`` as lists)."""
    from . import MODELS, get_method
    from .data import DATASETS

    path = Path(path)
    where = f"grid {path}"
    try:
        raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    except FileNotFoundError:
        raise GridError(f"{where} does not exist") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise GridError(f"{where} is not a readable tab-separated table: {e}") from None
    cols = list(raw.columns)
    missing = [c for c in COLUMNS if c not in cols]
    extra = [c for c in cols if c not in COLUMNS]
    if missing or extra:
        raise GridError(f"{where}: " + "; ".join(
            ([f"missing columns {missing}"] if missing else []) + ([f"unknown columns {extra}"] if extra else []))
            + f". The columns are: {', '.join(COLUMNS)}")
    if raw.empty:
        raise GridError(f"{where} has no rows")
    records = []
    for i, rec in raw.iterrows():
        rid = rec["row"].strip() or f"(line {i + 2})"
        out = {}
        for col, (kind, required) in COLUMNS.items():
            text = rec[col].strip()
            here = f"{where}, row {rid!r}, field {col!r}"
            if not text:
                if required:
                    raise GridError(f"{here}: empty")
                out[col] = None
                continue
            try:
                val = _parse(kind, text)
            except ValueError as e:
                raise GridError(f"{here}: {e}") from None
            if col in POSITIVE and val <= 0:
                raise GridError(f"{here}: must be positive, got {text!r}")
            if col in NON_NEGATIVE and val < 0:
                raise GridError(f"{here}: must not be negative, got {text!r}")
            if col == "flip" and val not in (0, 1):
                raise GridError(f"{here}: must be 0 or 1, got {text!r}")
            out[col] = val
        for col, reg in (("method", None), ("arch", MODELS), ("dataset", DATASETS)):
            try:
                get_method(out[col]) if reg is None else reg.get(out[col])
            except KeyError as e:
                raise GridError(f"{where}, row {rid!r}, field {col!r}: {e}") from None
        if out["arch"] == "wrn":
            for col in ("depth", "width"):
                if out[col] is None:
                    raise GridError(f"{where}, row {rid!r}, field {col!r}: required for arch wrn")
            if out["depth"] < 8 or (out["depth"] - 2) % 6:
                raise GridError(f"{where}, row {rid!r}, field 'depth': WRN depth must be 6n + 2 "
                                f"(8, 14, 20, 26, ...), got {out['depth']}")
        if "/" in out["row"] or out["row"].startswith("."):
            raise GridError(f"{where}, row {rid!r}, field 'row': must be a plain name (no '/')")
        try:  # what the job itself will check first: the config, and the model (on meta)
            _check_job(out)
        except ValueError as e:
            raise GridError(f"{where}, row {rid!r}: {e}") from None
        records.append(out)
    grid = pd.DataFrame(records, dtype=object)  # keeps ints as ints next to empty cells
    dup = grid["row"][grid["row"].duplicated()].tolist()
    if dup:
        raise GridError(f"{where}: duplicate row ids {sorted(set(dup))}")
    return grid.set_index("row", drop=False)


def _check_job(row: dict) -> None:
    from .train import TrainConfig, Trainer

    fields = ("dataset", "arch", "method", "epochs", "t0", "tmult", "batch_size", "lr_max",
              "weight_decay", "cutout", "crop_pad", "train_subset", "test_subset")
    kw = {f: row[f] for f in fields}
    kw.update(seed=row["seeds"][0], flip=bool(row["flip"]))
    if row["arch"] == "wrn":
        kw.update(depth=row["depth"], width=row["width"])
    Trainer(TrainConfig(**kw), Path("."), log=lambda *_: None).check()


def train_args(row: "pd.Series | dict", seed: int) -> list[str]:
    """The ``onebit train`` arguments of one grid row and seed."""
    args = ["--dataset", row["dataset"], "--arch", row["arch"], "--method", row["method"],
            "--epochs", row["epochs"], "--seed", seed, "--t0", row["t0"], "--tmult", row["tmult"],
            "--batch-size", row["batch_size"], "--lr-max", row["lr_max"],
            "--weight-decay", row["weight_decay"], "--cutout", row["cutout"],
            "--crop-pad", row["crop_pad"], "--flip" if row["flip"] else "--no-flip"]
    for col in ("depth", "width", "train_subset", "test_subset"):
        if row[col] is not None and not pd.isna(row[col]):
            args += ["--" + col.replace("_", "-"), row[col]]
    return [str(a) for a in args]


def jobs(grid: pd.DataFrame) -> list[tuple[str, int]]:
    """(row id, seed) of every training job."""
    return [(r, s) for r, seeds in zip(grid["row"], grid["seeds"]) for s in seeds]
