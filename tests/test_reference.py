"""README's reference table states what results/reference/fashion holds, number for number."""

import re
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
REF = REPO / "results" / "reference" / "fashion"


def readme_table() -> dict:
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- reference-table:")[1].split("<!-- /reference-table -->")[0]
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("method", "---"):
            rows[cells[0]] = cells[1:]
    return rows


def number(text: str) -> float:
    return float(text.replace("−", "-").replace("+", ""))


@pytest.mark.skipif(not REF.is_dir(), reason="no reference results in this checkout")
def test_readme_reference_table_matches_the_committed_tables():
    summary = pd.read_csv(REF / "summary.csv").set_index("method")
    gaps = pd.read_csv(REF / "gaps.csv").set_index("method")
    paper = pd.read_csv(REF / "paper_gaps.csv")
    paper = paper[(paper["paper_source"] == "W2017") & (paper["depth"] == 20) & (paper["width"] == 10)]
    rows = readme_table()
    assert set(rows) == set(summary.index)
    for method, (err, gap, claimed) in rows.items():
        mean, sd = (number(x) for x in re.fullmatch(r"(\S+) ± (\S+)", err).groups())
        assert mean == round(summary.loc[method, "test_err_mean"], 2), method
        assert sd == round(summary.loc[method, "test_err_std"], 2), method
        assert summary.loc[method, "seeds"] == 3 and summary.loc[method, "dataset"] == "fashion_mnist"
        if method == "fp32":
            assert gap == "" and claimed == ""
            continue
        assert number(gap) == round(gaps.loc[method, "gap"], 2), method
        want = paper[paper["method"] == method].set_index("dataset")["gap"]
        if claimed:
            c10, c100 = (number(x) for x in claimed.split(" / "))
            assert (c10, c100) == (round(want["cifar10"], 2), round(want["cifar100"], 2)), method
        else:
            assert want.empty, method
