"""Tidy memory table from the onebit memory measurements."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from onebit.report.tables import memory_table  # noqa: E402
from onebit.runio import atomic_write_bytes  # noqa: E402

df = memory_table(snakemake.input)
atomic_write_bytes(snakemake.output.csv, df.to_csv(index=False).encode())
atomic_write_bytes(snakemake.output.parquet, df.to_parquet(index=False))
