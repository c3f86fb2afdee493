"""Tidy gradient-fidelity table from onebit fidelity's JSON rows."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from onebit.report.tables import fidelity_table  # noqa: E402
from onebit.runio import atomic_write_bytes  # noqa: E402

df = fidelity_table(snakemake.input[0])
atomic_write_bytes(snakemake.output.csv, df.to_csv(index=False).encode())
atomic_write_bytes(snakemake.output.parquet, df.to_parquet(index=False))
