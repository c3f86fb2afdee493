"""Intervals for the report: the mean of a few seeds and its 95 % Student-t interval.

Pure Python (no SciPy): the two-sided 95 % quantiles of Student's t for 1-30 degrees of
freedom, and beyond 30 the Cornish-Fisher expansion around the normal quantile (its error
there is below 1e-4).
"""

from __future__ import annotations

import math

#: t_{0.975}(df) for df = 1..30 (two-sided 95 %)
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
_Z975 = 1.959964


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_interval(values) -> tuple:
    """``(mean, sd, n, low, high)`` of the finite ``values``: the 95 % interval of the mean
    is ``mean ± t975(n-1) sd / sqrt(n)``; with fewer than two values sd, low and high are NaN."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    n = len(v)
    if n == 0:
        return (math.nan, math.nan, 0, math.nan, math.nan)
    mean = sum(v) / n
    if n < 2:
        return (mean, math.nan, 1, math.nan, math.nan)
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return (mean, sd, n, mean - half, mean + half)
