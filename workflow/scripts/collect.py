"""Tidy tables from the run directories (glue: the logic is onebit.report.tables)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from onebit.grid import load_grid  # noqa: E402
from onebit.report.tables import gaps, load_published, paper_gaps, summarize, tidy_metrics  # noqa: E402
from onebit.runio import atomic_write_bytes  # noqa: E402

grid = load_grid(snakemake.input.grid, check=False)  # joined on its columns: no plugin, no model
published = load_published(snakemake.input.published)
metrics = tidy_metrics(snakemake.input.runs, grid)
summary = summarize(metrics, grid, published)
out = snakemake.output
for df, csv, parquet in (
    (metrics, out.metrics_csv, out.metrics_parquet),
    (summary, out.summary_csv, out.summary_parquet),
):
    atomic_write_bytes(csv, df.to_csv(index=False).encode())
    atomic_write_bytes(parquet, df.to_parquet(index=False))
atomic_write_bytes(out.gaps_csv, gaps(summary, metrics).to_csv(index=False).encode())
atomic_write_bytes(out.paper_gaps_csv, paper_gaps(published).to_csv(index=False).encode())
