"""Render every figure of onebit.report.FIGURES (pure functions in onebit.report.figures)
from the tidy tables it names."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd  # noqa: E402

from onebit.report import FIGURES, figures  # noqa: E402


def table(name):
    path = str(snakemake.input[name])
    return pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)


tables = {name: table(name) for name in {t for f in FIGURES.values() for t in f.inputs}}
for name, fig in FIGURES.items():
    figures.save(getattr(figures, name)(*(tables[t] for t in fig.inputs)), snakemake.output[name])
