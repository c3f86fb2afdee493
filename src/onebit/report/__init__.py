"""The report: tidy tables from run directories, then text and figures from those tables.

A figure is added in three places: its function in :mod:`onebit.report.figures`, its entry in
:data:`FIGURES` here (the tidy tables it takes, in order, and its section) and its caption,
``workflow/report/<name>.rst``. The
workflow renders every figure named here, and the report shows each in its section."""

from typing import NamedTuple

#: the report's sections that show figures
SECTIONS = ("results", "memory", "fidelity")


class Figure(NamedTuple):
    inputs: tuple  # the tidy tables of results/<grid>/ the function takes, in order
    section: str  # where the report shows it: one of SECTIONS


FIGURES = {
    "error_curves": Figure(("metrics",), "results"),
    "error_vs_paper": Figure(("summary", "metrics"), "results"),
    "gap_vs_baseline": Figure(("gaps", "paper_gaps", "summary"), "results"),
    "error_vs_memory": Figure(("summary", "memory"), "memory"),
    "memory_per_method": Figure(("memory",), "memory"),
    "gradient_fidelity": Figure(("fidelity",), "fidelity"),
}


def check_figures(figures: dict) -> None:
    """A misspelt section would hide a figure from the report silently: refused at import."""
    for name, figure in figures.items():
        if figure.section not in SECTIONS:
            raise ValueError(f"figure {name!r}: section must be one of {', '.join(SECTIONS)}, got {figure.section!r}")


check_figures(FIGURES)
