"""onebit.report.claims and the report's text of it: every verdict value by value, the
claims file checked against the published numbers, a grid's own tables, the formatters."""

import json
from pathlib import Path

import pandas as pd
import pytest

from helpers import tiny_cfg
from onebit.errors import ConfigError
from onebit.report import text
from onebit.report.claims import Claims, load_claims, table_changes, verdicts
from onebit.report.tables import load_published
from onebit.train import train

CONFIG = Path(__file__).parents[1] / "config"
CLAIMS = Claims(sources={"W2017": "[W]"}, tables={"slide16": "title"}, tolerance={"cifar10": 0.5, "cifar100": 1.0})

PUB_COLUMNS = [
    "paper_source",
    "paper_table",
    "paper_row",
    "method",
    "arch",
    "depth",
    "width",
    "epochs",
    "dataset",
    "metric",
    "value",
]


def _pub(*rows):
    return pd.DataFrame([dict(zip(PUB_COLUMNS, r)) for r in rows], columns=PUB_COLUMNS)


def _summary(*rows):
    """Grid rows linked to published rows: (row, paper_row, dataset, depth, err, sd, seeds, train_subset)."""
    return pd.DataFrame(
        [
            {
                "row": r,
                "paper_source": "W2017",
                "paper_table": "slide16",
                "paper_row": pr,
                "dataset": d,
                "arch": "wrn",
                "depth": depth,
                "width": 4.0,
                "method": "w1",
                "epochs": 63,
                "test_err_mean": err,
                "test_err_std": sd,
                "seeds": n,
                "train_subset": sub,
                "test_subset": None,
            }
            for r, pr, d, depth, err, sd, n, sub in rows
        ]
    )


NO_GAPS = pd.DataFrame(columns=["row", "gap"])
NO_PAPER_GAPS = pd.DataFrame(columns=["paper_source", "paper_row", "dataset", "metric", "gap"])


def test_every_verdict_value_by_value():
    pub = _pub(
        ("W2017", "slide16", "ours-in", "w1", "wrn", 20, 4, 63, "cifar10", "top1_err", 6.34),
        ("W2017", "slide16", "ours-out", "w1", "wrn", 20, 4, 63, "cifar100", "top1_err", 23.79),
        ("W2017", "slide16", "ours-small", "w1", "wrn", 20, 4, 63, "cifar10", "top1_err", 6.0),
        ("W2017", "slide16", "bc-published", "bc", "vgg", None, None, None, "cifar10", "top1_err", 8.27),
        ("W2017", "slide16", "ours-none", "w1", "wrn", 20, 10, 127, "cifar10", "top1_err", 4.48),
    )
    summary = _summary(
        ("a", "ours-in", "cifar10", 20, 6.70, 0.2, 2, None),  # +0.36 within ±0.5
        ("b", "ours-out", "cifar100", 20, 25.29, 0.1, 3, None),  # +1.50 outside ±1.0
        ("c", "ours-small", "fashion_mnist", 8, 9.0, 0.3, 2, 256),  # other data: gap compared
        ("d", "bc-published", "cifar10", 20, 7.0, 0.1, 2, None),
    )
    gaps = pd.DataFrame({"row": ["a", "c"], "gap": [0.4, 1.25]})
    paper_gaps = pd.DataFrame(
        {
            "paper_source": ["W2017"],
            "paper_row": ["ours-small"],
            "dataset": ["cifar10"],
            "metric": ["top1_err"],
            "gap": [0.9],
        }
    )
    v = verdicts(pub, summary, gaps, paper_gaps, CLAIMS).set_index("paper_row")
    assert list(v["verdict"]) == ["within", "outside", "scale", "quoted", "not run"]  # sorted by verdict
    assert v.loc["ours-in", "difference"] == pytest.approx(0.36)
    assert v.loc["ours-in", "tolerance"] == 0.5
    assert v.loc["ours-in", "reproduced"] == 6.70 and v.loc["ours-in", "reproduced_sd"] == 0.2
    assert v.loc["ours-in", "gap"] == 0.4 and v.loc["ours-in", "row"] == "a"
    assert v.loc["ours-out", "difference"] == pytest.approx(1.5) and v.loc["ours-out", "tolerance"] == 1.0
    assert v.loc["ours-small", "claimed_gap"] == 0.9 and v.loc["ours-small", "gap"] == 1.25
    assert pd.isna(v.loc["ours-small", "difference"])  # other data: no difference to the claim
    assert bool(v.loc["ours-small", "subset"]) and v.loc["ours-small", "run_dataset"] == "fashion_mnist"
    assert v.loc["bc-published", "reproduced"] == 7.0  # a quoted number keeps what was run for it
    assert pd.isna(v.loc["ours-none", "row"]) and pd.isna(v.loc["ours-none", "reproduced"])

    words = text.headline(verdicts(pub, summary, gaps, paper_gaps, CLAIMS), CLAIMS).set_index("published row")
    assert words.loc["ours-in", "verdict"] == "within tolerance (+0.36, ±0.5)"
    assert words.loc["ours-out", "verdict"] == "outside tolerance (+1.50, ±1)"
    assert words.loc["ours-small", "verdict"] == "different data or scale: gap compared"
    assert words.loc["ours-small", "claimed gap"] == "+0.90" and words.loc["ours-small", "gap here"] == "+1.25"
    assert words.loc["ours-in", "reproduced"] == "6.70 ± 0.20, 2 seeds, CIFAR-10, WRN-20-4, 63 ep."
    assert words.loc["ours-small", "reproduced"].endswith(", subset")
    assert words.loc["ours-none", "reproduced"] == "" and words.loc["ours-none", "verdict"] == "not run by this grid"
    assert words.loc["ours-in", "source"] == "[W] slide16"
    assert text.verdict_counts(verdicts(pub, summary, gaps, paper_gaps, CLAIMS)) == (
        "1 within tolerance, 1 outside tolerance, 1 different data or scale: gap compared, "
        "1 quoted from another paper (another network), 1 not run by this grid"
    )


def test_the_tolerance_is_inclusive_and_a_subset_is_not_the_papers_scale():
    pub = _pub(
        ("W2017", "slide16", "ours-edge", "w1", "wrn", 20, 4, 63, "cifar10", "top1_err", 6.0),
        ("W2017", "slide16", "ours-sub", "w1", "wrn", 20, 4, 63, "cifar10", "top1_err", 6.0),
        ("W2017", "slide16", "ours-net", "w1", "wrn", 26, 4, 63, "cifar10", "top1_err", 6.0),
    )
    summary = _summary(
        ("a", "ours-edge", "cifar10", 20, 6.5, 0.1, 2, None),
        ("b", "ours-sub", "cifar10", 20, 6.1, 0.1, 2, 1000),
        ("c", "ours-net", "cifar10", 20, 6.1, 0.1, 2, None),
    )
    v = verdicts(pub, summary, NO_GAPS, NO_PAPER_GAPS, CLAIMS).set_index("paper_row")["verdict"]
    assert v.to_dict() == {"ours-edge": "within", "ours-sub": "scale", "ours-net": "scale"}


def test_the_memory_claim_is_set_against_the_measured_accounting():
    pub = _pub(
        ("W2017", "slide14", "memory-1bit", "cl", None, None, None, None, "imagenet", "train_act_bytes_bs256", 56e6)
    )
    memory = pd.DataFrame(
        {
            "arch": ["resnet18"],
            "quantity": ["paper accounting"],
            "kind": ["total"],
            "method": ["cl"],
            "bytes_per_image": [229_000.0],
        }
    )
    v = verdicts(pub, _summary(), NO_GAPS, NO_PAPER_GAPS, CLAIMS, memory).iloc[0]
    assert v["verdict"] == "memory"
    assert v["reproduced"] == 229_000.0 * 256
    assert v["difference"] == pytest.approx(229_000 * 256 / 56e6 - 1)
    words = text.headline(verdicts(pub, _summary(), NO_GAPS, NO_PAPER_GAPS, CLAIMS, memory), CLAIMS).iloc[0]
    assert words["claim"] == "0.056 GB = 53.4 MiB"
    assert words["reproduced"] == "55.9 MiB (the paper's accounting, batch 256)"
    assert words["verdict"] == "memory accounting: +5% (the slide rounds)"
    # without a measurement: not run
    assert verdicts(pub, _summary(), NO_GAPS, NO_PAPER_GAPS, CLAIMS).iloc[0]["verdict"] == "not run"


def test_table_changes_against_the_first_row_of_each_method():
    base = {"depth": 8, "cutout": 0}
    rows = [
        ("a", "fp32", {}, 21.25, "recipe"),
        ("a2", "fp32", {"cutout": 14}, 20.5, "recipe"),
        ("b", "w1", {}, 23.5, "recipe"),
        ("p", "w1", {}, 5.0, "slide16"),
    ]
    summary = pd.DataFrame(
        [
            {"row": r, "method": m, "table": t, "recipe": json.dumps({**base, **c}), "test_err_mean": e}
            for r, m, c, e, t in rows
        ]
    )
    ch = table_changes(summary, ["slide16"]).set_index("row")
    assert list(ch.index) == ["a", "a2", "b"]
    assert ch.loc["a2", "reference"] == "a" and ch.loc["a2", "changed"] == [("cutout", 14)]
    assert ch.loc["a2", "difference"] == pytest.approx(-0.75)
    assert pd.isna(ch.loc["a", "difference"]) and pd.isna(ch.loc["b", "difference"])


def test_the_committed_claims_cover_the_published_numbers():
    pub = load_published(CONFIG / "published.tsv")
    claims = load_claims(CONFIG / "published.tsv", pub)
    assert set(pub["paper_table"]) - {"abstract", "slide14"} <= set(claims.tables)
    assert claims.tolerance == {"cifar10": 0.5, "cifar100": 1.0, "imagenet": 1.0}


def test_claims_that_miss_a_dataset_or_are_not_yaml_are_named(tmp_path):
    pub_path = tmp_path / "published.tsv"
    pub_path.write_text((CONFIG / "published.tsv").read_text())
    with pytest.raises(ConfigError, match="claims.yaml: missing"):
        load_claims(pub_path)
    claims = (CONFIG / "claims.yaml").read_text()
    (tmp_path / "claims.yaml").write_text(claims.replace("  imagenet: 1.0\n", ""))
    with pytest.raises(ConfigError, match=r"tolerances for the datasets \['imagenet'\]"):
        load_claims(pub_path, load_published(pub_path))
    (tmp_path / "claims.yaml").write_text(claims.replace("  cifar10: 0.5", "  cifar10: half"))
    with pytest.raises(ConfigError, match="not a number of points"):
        load_claims(pub_path)
    (tmp_path / "claims.yaml").write_text("sources: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_claims(pub_path)


def test_a_published_table_with_a_missing_column_or_a_word_for_a_value_is_named(tmp_path):
    path = tmp_path / "published.tsv"
    lines = (CONFIG / "published.tsv").read_text().splitlines()
    path.write_text("\n".join(line.rsplit("\t", 1)[0] for line in lines) + "\n")
    with pytest.raises(ConfigError, match=f"{path}: missing column.*value"):
        load_published(path)
    path.write_text("\n".join(lines[:2] + [lines[2].rsplit("\t", 1)[0] + "\tfour"]) + "\n")
    with pytest.raises(ConfigError, match="must be a number"):
        load_published(path)


def test_collect_stops_when_metrics_disagree_with_final(tiny_fashion, tmp_path):
    """A truncated metrics file would report an earlier epoch as final: collect names the run."""
    from onebit.grid import load_grid
    from onebit.report.tables import InconsistentRun, tidy_metrics

    run = tmp_path / "runs" / "r1" / "seed0"
    train(tiny_cfg(tiny_fashion), run, log=lambda *_: None)
    grid_tsv = tmp_path / "g.tsv"
    head = "row\ttable\tdataset\tarch\tdepth\twidth\tbatch_size\tlr_max\tmethod\tepochs\tseeds\n"
    grid_tsv.write_text(head + "r1\tt\ttiny_fashion\twrn\t8\t0.25\t32\t0.05\tfp32\t3\t0\n")
    grid = load_grid(grid_tsv, check=False)
    assert len(tidy_metrics([run / "final.json"], grid)) == 6
    # a grid edited after the run finished (or a run copied in from another row) is named
    grid_tsv.write_text(head + "r1\tt\ttiny_fashion\twrn\t8\t0.25\t32\t0.05\tcl\t3\t0\n")
    with pytest.raises(InconsistentRun, match=r"not the run the grid asks for .*'method': \('fp32', 'cl'\)"):
        tidy_metrics([run / "final.json"], load_grid(grid_tsv, check=False))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:4]) + "\n")
    with pytest.raises(InconsistentRun, match=f"{run}.*last epoch 2, final.json says 3"):
        tidy_metrics([run / "final.json"], grid)


def test_every_figure_has_its_function_caption_tables_and_section():
    """A figure is added in three places (its function, its FIGURES entry, its caption): the workflow renders
    every entry of FIGURES from the tables it names and the report shows it in its section."""
    import inspect
    import re

    from onebit.report import FIGURES, figures

    repo = Path(__file__).parents[1]
    rule = (repo / "workflow/rules/figures.smk").read_text()
    tables = set(re.findall(r"^\s+(\w+)=f\"\{RES\}/", rule.split("output:")[0], re.M))
    notebook = (repo / "workflow/notebooks/report.ipynb").read_text()
    for name, fig in FIGURES.items():
        assert len(inspect.signature(getattr(figures, name)).parameters) == len(fig.inputs), name
        assert (repo / f"workflow/report/{name}.rst").read_text().strip(), name
        assert set(fig.inputs) <= tables, (name, fig.inputs, tables)
        assert f'figures(\\"{fig.section}\\")' in notebook, (name, fig.section)


def test_a_figure_in_a_misspelt_section_is_refused():
    from onebit.report import Figure, check_figures

    with pytest.raises(ValueError, match="figure 'mine': section must be one of results, memory, fidelity"):
        check_figures({"mine": Figure(("summary",), "result")})
