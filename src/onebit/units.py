"""The suite's one byte formatter and one number formatter (tables, logs, figures, report).

Bytes are binary units throughout (KiB, MiB, GiB); a missing value prints as ``missing``.
Torch-free, so that the report and the command line share it.
"""

from __future__ import annotations

import math

_UNITS = (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def _missing(v) -> bool:
    if v is None or type(v).__name__ == "NAType":  # pandas' NA, without importing pandas
        return True
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def format_bytes(n, missing: str = "–", digits: "int | None" = None) -> str:
    """``55.9 MiB``, ``1.75 GiB``, ``230.0 KiB``, ``12 B``; with ``digits``, that many
    significant digits (``64 KiB``, ``1.5 GiB``: axis ticks)."""
    if _missing(n):
        return missing
    for unit, scale in _UNITS:
        if abs(n) >= scale:
            if digits is not None:
                return f"{n / scale:.{digits}g} {unit}"
            return f"{n / scale:.2f} {unit}" if unit == "GiB" else f"{n / scale:.1f} {unit}"
    return f"{n:.{digits}g} B" if digits is not None else f"{n:.0f} B"


def format_number(v, fmt: str = "{:.2f}", missing: str = "") -> str:
    """``fmt`` applied to ``v`` (e.g. ``"{:+.2f}"`` for a difference); ``missing`` for none."""
    return missing if _missing(v) else fmt.format(v)


def mean_sd(mean, std, n=None) -> str:
    """``21.85 ± 0.14``; one seed says so, and seeds that ended on the same error say so
    instead of ``± 0.00``."""
    if _missing(mean):
        return ""
    if _missing(std):
        return f"{mean:.2f}" + (" (1 seed)" if n == 1 else "")
    if std == 0:
        return f"{mean:.2f} (all {int(n)} seeds equal)" if n else f"{mean:.2f} (seeds equal)"
    return f"{mean:.2f} ± {std:.2f}"


def mean_interval_text(mean, low, high, fmt: str = "{:.2f}", n=None) -> str:
    """``21.85 [21.50, 22.20]`` (the 95 % interval); without one, the mean alone, saying
    why where ``n`` is one."""
    if _missing(mean):
        return ""
    if _missing(low) or _missing(high):
        return fmt.format(mean) + (" (1 seed: no interval)" if n == 1 else "")
    return f"{fmt.format(mean)} [{fmt.format(low)}, {fmt.format(high)}]"
