"""Render the figures (pure functions in onebit.report.figures) from the tidy tables."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd  # noqa: E402

from onebit.report import figures  # noqa: E402

i, o = snakemake.input, snakemake.output
metrics, summary = pd.read_parquet(i.metrics), pd.read_parquet(i.summary)
figures.save(figures.error_curves(metrics), o.error_curves)
figures.save(figures.error_vs_paper(summary, metrics), o.error_vs_paper)
figures.save(figures.gap_vs_baseline(pd.read_csv(i.gaps), pd.read_csv(i.paper_gaps), summary), o.gap_vs_baseline)
figures.save(figures.memory_per_method(pd.read_parquet(i.memory)), o.memory_per_method)
figures.save(figures.gradient_fidelity(pd.read_parquet(i.fidelity)), o.gradient_fidelity)
