"""The report: tidy tables from run directories, then text and figures from those tables.

A figure is added in two places: its function in :mod:`onebit.report.figures` (taking the
tidy tables it names here, in order) and its caption, ``workflow/report/<name>.rst``. The
workflow renders every figure named here, and the report shows each in its section."""

from typing import NamedTuple


class Figure(NamedTuple):
    inputs: tuple  # the tidy tables of results/<grid>/ the function takes, in order
    section: str  # where the report shows it: "results", "memory" or "fidelity"


FIGURES = {
    "error_curves": Figure(("metrics",), "results"),
    "error_vs_paper": Figure(("summary", "metrics"), "results"),
    "gap_vs_baseline": Figure(("gaps", "paper_gaps", "summary"), "results"),
    "memory_per_method": Figure(("memory",), "memory"),
    "gradient_fidelity": Figure(("fidelity",), "fidelity"),
}
