"""The tidy tables of one results folder, as the report reads them.

A folder is either a grid's pipeline output (``results/<grid>/``: Parquet and CSV) or a
folder of CSV files alone, such as the committed reference ``results/reference/fashion/``
or tables merged from several machines. Parquet is read where it is there, CSV otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import ConfigError

#: the tables the report reads; the first two are required (the gaps are derived from them)
TABLES = ("summary", "metrics", "gaps", "paper_gaps", "memory", "fidelity")
REQUIRED = ("summary", "metrics")
#: the columns the report reads from each table, and which of them hold numbers
COLUMNS = {
    "summary": (
        ["row", "table", "dataset", "arch", "depth", "width", "method", "epochs", "recipe", "seeds"]
        + ["paper_source", "paper_table", "paper_row", "memory", "test_err_mean", "test_err_std", "paper_err"],
        ["test_err_mean", "test_err_std", "seeds", "epochs"],
    ),
    "metrics": (
        ["row", "seed", "split", "epoch", "top1_err", "method", "dataset", "arch", "depth", "width", "epoch_seconds"],
        ["epoch", "top1_err", "epoch_seconds"],
    ),
    "memory": (
        ["measurement", "arch", "method", "batch_size", "quantity", "kind", "bytes_per_image", "ratio_vs_fp32"],
        ["bytes_per_image", "batch_size"],
    ),
    "fidelity": (["method", "layer", "index", "exact_norm", "bias", "std", "rmse", "noise_floor", "draws"], ["bias"]),
}


def _check_columns(res: Path, name: str, df: pd.DataFrame) -> None:
    if name not in COLUMNS or df.empty and not len(df.columns):
        return
    need, numeric = COLUMNS[name]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{res}/{name}: missing column(s) {', '.join(missing)}. It is not a table the pipeline collected "
            "(results/README.md lists the columns); collect it again (snakemake --cores all --config grid=<grid>)."
        )
    for c in numeric:
        bad = df[c][pd.to_numeric(df[c], errors="coerce").isna() & df[c].notna()]
        if len(bad):
            raise ConfigError(
                f"{res}/{name}: column {c} holds {str(bad.iloc[0])[:40]!r} where a number belongs (line "
                f"{bad.index[0] + 2} of the CSV). Restore the table or collect it again."
            )
        df[c] = pd.to_numeric(df[c])


def _read(res: Path, name: str) -> "pd.DataFrame | None":
    parquet, csv = res / f"{name}.parquet", res / f"{name}.csv"
    try:
        if parquet.exists():
            return pd.read_parquet(parquet)
        if csv.exists():
            return pd.read_csv(csv)
    except Exception as e:  # a damaged file: named, with what to do
        raise ConfigError(
            f"{parquet if parquet.exists() else csv}: not a readable table ({type(e).__name__}: {e}). "
            "Delete it and run the pipeline again (snakemake regenerates it from the run directories)."
        ) from None
    return None


def load_results(res) -> dict:
    """``{name: DataFrame}`` for :data:`TABLES` from the folder ``res``: memory and
    fidelity empty where the grid measures none. Tables without the provenance columns
    (collected before they existed) take them from the folder's ``env.json`` if it has one."""
    from .tables import PROVENANCE

    res = Path(res)
    if not res.is_dir():
        raise ConfigError(
            f"{res}: no such results folder. Give a grid's results (results/<grid>/, after "
            "`snakemake --cores all --config grid=<grid>`) or a folder of its tidy tables."
        )
    tables = {name: _read(res, name) for name in TABLES}
    missing = [n for n in REQUIRED if tables[n] is None]
    if missing:
        raise ConfigError(
            f"{res}: no {' and no '.join(f'{n}.parquet or {n}.csv' for n in missing)}. A results folder holds the "
            "tidy tables `snakemake` collects (results/<grid>/); run the pipeline for the grid first."
        )
    from .tables import FIDELITY_COLUMNS, memory_table

    empty = {"memory": memory_table([]), "fidelity": pd.DataFrame(columns=FIDELITY_COLUMNS)}
    for name in TABLES:
        if tables[name] is None:  # not measured by this grid: an empty table of the usual columns
            tables[name] = empty.get(name, pd.DataFrame())
        _check_columns(res, name, tables[name])
    env_path = res / "env.json"
    env = {}
    if env_path.exists():
        try:
            env = json.loads(env_path.read_text())
        except ValueError:
            env = {}
    for name in ("summary", "metrics"):
        df = tables[name]
        for col in PROVENANCE:
            if col not in df:
                df[col] = str(env[col]) if col in env else ""
    return tables
