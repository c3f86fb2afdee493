"""onebit.units: the one byte formatter and the one number formatter."""

import math

import pandas as pd

from onebit.units import format_bytes, format_number, mean_sd


def test_bytes_in_binary_units():
    assert format_bytes(56e6) == "53.4 MiB"
    assert format_bytes(1.8e9) == "1.68 GiB"
    assert format_bytes(230 * 1024) == "230.0 KiB"
    assert format_bytes(12) == "12 B"
    assert format_bytes(-3 * 2**20) == "-3.0 MiB"
    assert format_bytes(64 * 1024, digits=3) == "64 KiB"
    assert format_bytes(1.5 * 2**30, digits=3) == "1.5 GiB"
    for missing in (None, math.nan, pd.NA):
        assert format_bytes(missing) == "–" and format_bytes(missing, missing="") == ""


def test_numbers_and_means():
    assert format_number(0.364, "{:+.2f}") == "+0.36"
    assert format_number(None) == "" and format_number(math.nan, missing="-") == "-"
    assert mean_sd(21.854, 0.141, 3) == "21.85 ± 0.14"
    assert mean_sd(21.85, math.nan, 1) == "21.85 (1 seed)"
    assert mean_sd(21.85, 0.0, 2) == "21.85 (all 2 seeds equal)"
    assert mean_sd(None, 0.1, 2) == ""
