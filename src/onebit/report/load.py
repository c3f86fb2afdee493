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

#: the tables the report reads; the first two are required
TABLES = ("summary", "metrics", "gaps", "paper_gaps", "memory", "fidelity")
REQUIRED = ("summary", "metrics")


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
    for name in TABLES:
        if tables[name] is None:
            tables[name] = pd.DataFrame()
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
