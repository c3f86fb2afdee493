"""onebit.report.claims and the report's text of it: every verdict value by value, the
claims file checked against the published numbers, a grid's own tables, the formatters."""

import json
from pathlib import Path

import pandas as pd
import pytest

from helpers import chromium, tiny_cfg
from onebit.errors import ConfigError
from onebit.report import text
from onebit.report.claims import Claims, load_claims, table_changes, verdicts
from onebit.report.stats import mean_interval, t975
from onebit.report.tables import gaps as paired_gaps
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
    # a gap without an interval (no seed pairs given) cannot be set against the paper's
    assert words.loc["ours-small", "verdict"] == (
        "different data or scale: gap compared (one seed: no interval to compare with)"
    )
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


def test_t_quantiles_are_the_tables():
    # two-sided 95 % quantiles of Student's t (any statistics table)
    for df, t in (
        (1, 12.706),
        (2, 4.303),
        (5, 2.571),
        (10, 2.228),
        (30, 2.042),
        (40, 2.021),
        (60, 2.000),
        (120, 1.980),
    ):
        assert t975(df) == pytest.approx(t, abs=6e-4), df
    assert t975(10**6) == pytest.approx(1.95996, abs=1e-4)
    with pytest.raises(ValueError):
        t975(0)
    mean, sd, n, low, high = mean_interval([1.0, 2.0, 3.0])
    assert (mean, sd, n) == (2.0, 1.0, 3)
    assert (low, high) == pytest.approx((2 - 4.3027 / 3**0.5, 2 + 4.3027 / 3**0.5))
    assert mean_interval([5.0])[:3] == (5.0, mean_interval([5.0])[1], 1) and pd.isna(mean_interval([5.0])[3])
    assert mean_interval([float("nan"), 1.0, 3.0])[:3] == (2.0, 2**0.5, 2)  # a NaN is no seed


def _runs(*runs):
    """Tidy metrics of final test lines: (row, seed, error)."""
    return pd.DataFrame(
        [{"row": r, "seed": s, "split": "test", "epoch": 3, "top1_err": e} for r, s, e in runs]
        + [{"row": r, "seed": s, "split": "test", "epoch": 2, "top1_err": 99.0} for r, s, _ in runs]
    )


def test_gaps_are_paired_per_seed_with_an_interval():
    summary = pd.DataFrame(
        {
            "row": ["f", "w", "c", "o"],
            "method": ["fp32", "w1", "cl", "w1"],
            "recipe": ["r", "r", "r", "other"],
            "dataset": "fashion_mnist",
            "arch": "wrn",
            "depth": 8,
            "width": 1.0,
            "test_err_mean": [0.0] * 4,
        }
    )
    # w1 ran seeds 0-3, fp32 0-2: seed 3 has no pair; cl ran one seed
    metrics = _runs(
        ("f", 0, 10.0), ("f", 1, 11.0), ("f", 2, 12.0),
        ("w", 0, 12.0), ("w", 1, 12.5), ("w", 2, 15.0), ("w", 3, 40.0),
        ("c", 1, 11.5),
        ("o", 0, 30.0),
    )  # fmt: skip
    g = paired_gaps(summary, metrics).set_index("row")
    assert list(g.index) == ["w", "c"]  # "o" has no 32-bit row of its recipe
    diffs = [2.0, 1.5, 3.0]
    assert g.loc["w", "gap"] == pytest.approx(sum(diffs) / 3) and g.loc["w", "pairs"] == 3
    sd = pd.Series(diffs).std()
    assert g.loc["w", "gap_sd"] == pytest.approx(sd)
    assert g.loc["w", "gap_low"] == pytest.approx(13 / 6 - 4.3027 * sd / 3**0.5)
    assert g.loc["w", "gap_high"] == pytest.approx(13 / 6 + 4.3027 * sd / 3**0.5)
    assert g.loc["w", "fp32_err"] == 11.0 and g.loc["w", "test_err_mean"] == pytest.approx(13.1666667)
    assert g.loc["c", "gap"] == 0.5 and g.loc["c", "pairs"] == 1 and pd.isna(g.loc["c", "gap_low"])
    words = text.gaps_table(g.reset_index()).set_index("method")
    assert words.loc["w1", "gap, points [95 % interval]"] == "+2.17 [+0.27, +4.06]"
    assert words.loc["w1", "reading"] == "worse than 32-bit"
    assert words.loc["cl", "gap, points [95 % interval]"] == "+0.50 (1 seed: no interval)"


def _scale_case(claimed_gap, gap, low, high, method="w1"):
    pub = _pub(("W2017", "slide16", "ours", method, "wrn", 20, 4, 63, "cifar10", "top1_err", 6.0))
    summary = _summary(("a", "ours", "fashion_mnist", 8, 9.0, 0.3, 3, 256)).assign(method=method)
    gaps = pd.DataFrame({"row": ["a"], "gap": [gap], "gap_low": [low], "gap_high": [high], "pairs": [3]})
    paper_gaps = pd.DataFrame(
        {"paper_source": ["W2017"], "paper_row": ["ours"], "dataset": ["cifar10"], "metric": ["top1_err"]}
    ).assign(gap=claimed_gap)
    return verdicts(pub, summary, gaps, paper_gaps, CLAIMS)


def test_a_gap_agrees_with_the_papers_only_inside_its_interval():
    assert _scale_case(1.0, 1.5, 0.2, 2.8).iloc[0]["agreement"] == "agrees"
    assert _scale_case(0.2, 1.5, 0.2, 2.8).iloc[0]["agreement"] == "agrees"  # the interval is closed
    assert _scale_case(0.1, 1.5, 0.2, 2.8).iloc[0]["agreement"] == "larger"
    assert _scale_case(3.0, 1.5, 0.2, 2.8).iloc[0]["agreement"] == "smaller"
    assert _scale_case(1.0, 1.5, None, None).iloc[0]["agreement"] == "one seed"
    assert _scale_case(None, 1.5, 0.2, 2.8).iloc[0]["agreement"] == "no gap"
    assert _scale_case(None, None, None, None, method="fp32").iloc[0]["agreement"] == "baseline"
    v = _scale_case(1.0, 1.5, 0.2, 2.8)
    assert v.iloc[0]["gap_low"] == 0.2 and v.iloc[0]["gap_high"] == 2.8 and v.iloc[0]["pairs"] == 3
    t = text.tally(pd.concat([v, _scale_case(0.1, 1.5, 0.2, 2.8), _scale_case(None, None, None, None, "fp32")]))
    assert (t["tested"], t["scale"], t["scale agrees"], t["scale larger"], t["baseline"]) == (2, 2, 1, 1, 1)
    line = text.claims_table(v, CLAIMS).iloc[0]
    assert line["status"] == "held"
    assert line["published"] == "gap +1.00 (error 6.00)"
    assert line["reproduced"] == "gap +1.50 [+0.20, +2.80] on Fashion-MNIST WRN-8-4, 63 ep., subset, 3 seeds"
    assert text.claims_table(_scale_case(0.1, 1.5, 0.2, 2.8), CLAIMS).iloc[0]["status"] == "failed"
    assert text.claims_table(_scale_case(3.0, 1.5, 0.2, 2.8), CLAIMS).iloc[0]["status"] == "differs"
    assert text.claims_table(_scale_case(None, None, None, None, "fp32"), CLAIMS).empty  # a baseline is no claim
    line = text.claims_table(_scale_case(None, 1.5, 0.2, 2.8), CLAIMS).iloc[0]
    assert line["published"] == "error 6.00 (no 32-bit row of it published: no gap)" and line["status"] == "undecided"


def _memory(method, kept_ratio, peak_ratio, floats, total):
    rows = [("paper accounting", "total", 7154.0, 32.0), ("autograd keeps", "total", total, kept_ratio)]
    rows += [("autograd keeps", "float activations", floats, None), ("step peak", "total", 1.0, peak_ratio)]
    return pd.DataFrame(
        [
            {"measurement": "resnet18-224", "arch": "resnet18", "method": method, "quantity": q, "kind": k}
            | {"bytes_per_image": b, "ratio_vs_fp32": r}
            for q, k, b, r in rows
        ]
    )


def test_the_memory_claim_is_judged_by_what_autograd_keeps():
    pub = _pub(
        (
            "W2017",
            "slide14",
            "memory-32bit",
            "fp32",
            None,
            None,
            None,
            None,
            "imagenet",
            "train_act_bytes_bs256",
            1.8e9,
        ),
        ("W2017", "slide14", "memory-1bit", "cl", None, None, None, None, "imagenet", "train_act_bytes_bs256", 5.6e7),
    )
    fp32 = _memory("fp32", 1.0, 1.0, 400.0, 400.0).assign(bytes_per_image=[228928.0, 400.0, 400.0, 1.0])
    v = verdicts(
        pub, _summary(), NO_GAPS, NO_PAPER_GAPS, CLAIMS, pd.concat([fp32, _memory("cl", 1.9, 1.3, 180.0, 200.0)])
    )
    v = v.set_index("paper_row")
    assert v.loc["memory-32bit", "agreement"] == "accounting"
    one = v.loc["memory-1bit"]
    assert one["claimed_ratio"] == pytest.approx(1.8e9 / 5.6e7) and one["kept_ratio"] == 1.9
    assert one["peak_ratio"] == 1.3 and one["float_share"] == pytest.approx(0.9)
    assert one["agreement"] == "does not hold" and one["measurement"] == "resnet18-224"
    line = text.claims_table(v.reset_index(), CLAIMS).iloc[0]  # the 32-bit accounting line is folded into it
    assert len(text.claims_table(v.reset_index(), CLAIMS)) == 1 and line["status"] == "failed"
    assert line["verdict"].startswith("does not hold: autograd keeps 1.9x less, not 32.1x; 90% of what it keeps")
    assert "step peak 1.3x less" in line["reproduced"]
    assert text.tally(v.reset_index())["memory does not hold"] == 1
    # 32.1x * (1 - 0.1) = 28.9x: a measured 29x holds, 28x does not
    for kept, agreement in ((29.0, "holds"), (28.0, "does not hold")):
        memory = pd.concat([fp32, _memory("cl", kept, 20.0, 0.0, 200.0)])
        got = verdicts(pub, _summary(), NO_GAPS, NO_PAPER_GAPS, CLAIMS, memory).set_index("paper_row")
        assert got.loc["memory-1bit", "agreement"] == agreement, kept


def test_the_first_screen_table_escapes_what_a_grid_cell_holds():
    df = pd.DataFrame({"claim": ["<script>alert(1)</script>"], "verdict": ["<img src=x onerror=alert(2)>"]})
    html = text.html_table(df.assign(status="held"), status="status")
    assert "<script>" not in html and "<img" not in html and "&lt;script&gt;" in html
    assert "#d4edda" in html and "status" not in html
    assert text.heading(2, 'a"b', "<b>x</b>") == '<h2 id="a&quot;b">&lt;b&gt;x&lt;/b&gt;</h2>'


def test_runs_from_two_machines_stay_distinguishable_in_the_tables(tiny_fashion, tmp_path):
    """Run directories merged from two machines: every metrics line keeps its run's device,
    torch and commit (from env.json), the summary names both, and the report can say so."""
    from onebit.grid import load_grid
    from onebit.report.tables import gaps, summarize, tidy_metrics

    head = "row\ttable\tdataset\tarch\tdepth\twidth\tbatch_size\tlr_max\tmethod\tepochs\tseeds\n"
    grid_tsv = tmp_path / "g.tsv"
    grid_tsv.write_text(head + "r1\tt\ttiny_fashion\twrn\t8\t0.25\t32\t0.05\tfp32\t1\t0,1\n")
    finals = []
    for seed, (device, name) in enumerate((("cpu", "x86_64"), ("cuda", "NVIDIA H100"))):
        run = tmp_path / "runs" / "r1" / f"seed{seed}"
        train(tiny_cfg(tiny_fashion, epochs=1, seed=seed), run, log=lambda *_: None)
        env = json.loads((run / "env.json").read_text())
        (run / "env.json").write_text(json.dumps({**env, "device": device, "device_name": name}))
        finals.append(run / "final.json")
    grid = load_grid(grid_tsv, check=False)
    metrics = tidy_metrics(finals, grid)
    assert set(zip(metrics["seed"], metrics["device_name"])) == {(0, "x86_64"), (1, "NVIDIA H100")}
    assert metrics["torch_version"].notna().all() and metrics["git_revision"].notna().all()
    summary = summarize(metrics, grid, load_published(CONFIG / "published.tsv"))
    assert summary.loc[0, "device_name"] == "NVIDIA H100, x86_64" and summary.loc[0, "device"] == "cpu, cuda"
    assert summary.loc[0, "test_err_low"] <= summary.loc[0, "test_err_mean"] <= summary.loc[0, "test_err_high"]
    assert gaps(summary, metrics).empty  # no method beside the 32-bit row
    line = text.provenance_text("g", tmp_path, summary, metrics)
    assert "**Devices:** cpu, cuda (NVIDIA H100, x86_64)" in line and "2 runs" in line


@pytest.mark.slow
def test_the_committed_reference_report_is_what_onebit_report_renders(tmp_path):
    """results/reference/fashion/report.html is the report of the committed tables as the
    notebook renders it now (its tally and claims table match a fresh rendering), and a
    reader sees the tally on the first screen (1400 x 900 in Chromium)."""
    import html as htmllib
    import re
    import subprocess
    import sys

    repo = Path(__file__).parents[1]
    out = tmp_path / "report.html"
    proc = subprocess.run(
        [sys.executable, "-m", "onebit", "report", str(repo / "results/reference/fashion"), "--output", str(out)]
        + ["--grid", "fashion"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    def first_screen(page):
        tally = re.search(r'<p id="tally"[^>]*>(.*?)</p>', page, re.S).group(1)
        table = re.search(r"<table.*?</table>", page.split('id="tally"')[1], re.S).group(0)
        return htmllib.unescape(re.sub(r"<[^>]+>", "", tally)), table

    fresh = out.read_text()
    committed = (repo / "results/reference/fashion/report.html").read_text()
    assert first_screen(committed) == first_screen(fresh), "re-render it: onebit report results/reference/fashion"
    tally, table = first_screen(fresh)
    assert tally.startswith("6 claims tested by this grid: 0 within tolerance · 0 outside tolerance · 6 at a ")
    assert "(gaps against the paper's: 0 agree, 5 larger, 1 smaller)" in tally
    assert table.count("<tr") == 7 and table.count("#f8d7da") == 5 and table.count("#fff3cd") == 1
    assert "Traceback" not in fresh and "/tmp/" not in fresh
    if not chromium():
        pytest.skip("no Chromium here (.ci/run installs Debian's chromium)")
    page = tmp_path / "measured.html"
    page.write_text(
        fresh.replace(
            "</body>",
            "<script>window.addEventListener('load', () => { const d = document.createElement('div');"
            " d.id = 'claims-table-top'; d.textContent = Math.round(document.querySelector('#tally ~ table,"
            " table.dataframe').getBoundingClientRect().top);"
            " document.body.appendChild(d); });</script></body>",
        )
    )
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"]
    dom = subprocess.run(
        [chromium(), *flags, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom"]
        + [page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    top = int(re.search(r'id="claims-table-top">(\d+)<', dom).group(1))
    assert 0 < top < 900, f"the claims table starts {top} pixels down: not on the first screen"


def test_the_pareto_front_and_the_memory_table_value_by_value():
    from onebit.report.figures import pareto_front

    pts = pd.DataFrame({"m": ["a", "b", "c", "d", "e"], "x": [1.0, 2.0, 2.0, 3.0, 4.0], "y": [9.0, 5.0, 6.0, 7.0, 1.0]})
    assert list(pareto_front(pts, "x", "y")["m"]) == ["a", "b", "e"]  # c and d are beaten by b
    memory = pd.DataFrame(
        [
            {"measurement": "net", "method": m, "kind": "total", "quantity": q, "ratio_vs_fp32": r}
            | {"step_ratio_vs_fp32": t}
            for m, t, ratios in (("cl", 1.5, (1.9, 1.4)), ("fp32", 1.0, (1.0, 1.0)))
            for q, r in zip(("autograd keeps", "step peak"), ratios)
        ]
    )
    table = text.memory_overview(memory)
    assert list(table.columns) == ["method", "net: kept x less", "net: peak x less", "net: step time x fp32"]
    assert table.values.tolist() == [["fp32", "1.0", "1.0", "1.00"], ["cl", "1.9", "1.4", "1.50"]]


REFERENCE = Path(__file__).parents[1] / "results/reference/fashion"


def _report(folder, *extra):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "onebit", "report", str(folder), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).parents[1],
    )


@pytest.mark.slow
def test_the_report_escapes_run_metadata_and_derives_its_gaps(tmp_path):
    """Hostile text in any cell the report writes into its prose (device, dataset,
    measurement, fidelity batch) stays text; a stale gaps.csv in the folder is not read (the
    gaps come from summary and metrics), and a folder of summary and metrics alone renders."""
    import shutil

    folder = tmp_path / "hostile"
    shutil.copytree(REFERENCE, folder)
    evil = "<img src=x onerror=alert(1)>"
    for name, cols in (
        ("summary", ["device_name", "device", "torch_version"]),
        ("metrics", ["device_name"]),
        ("memory", ["device"]),
        ("fidelity", ["batch", "network"]),
    ):
        df = pd.read_csv(folder / f"{name}.csv")
        for c in cols:
            df[c] = evil
        df.to_csv(folder / f"{name}.csv", index=False)
    memory = pd.read_csv(folder / "memory.csv")
    memory["measurement"] = "<svg onload=alert(2)>"
    memory.to_csv(folder / "memory.csv", index=False)
    gaps = pd.read_csv(folder / "gaps.csv").assign(fp32_row="ghost-row")
    gaps.to_csv(folder / "gaps.csv", index=False)
    proc = _report(folder, "--output", str(tmp_path / "h.html"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (tmp_path / "h.html").read_text()
    assert "<img src=x" not in page and "<svg onload" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "ghost-row" not in page and "full-fp32-8-1" in page  # the gaps were derived, not read
    # summary and metrics alone: the gaps and the published gaps are derived
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("summary.csv", "metrics.csv"):
        shutil.copy(REFERENCE / name, bare / name)
    proc = _report(bare)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "6 claims tested by this grid" in (bare / "report.html").read_text()


@pytest.mark.slow
def test_onebit_report_refuses_bad_folders_and_outputs(tmp_path):
    import shutil

    folder = tmp_path / "ref"
    shutil.copytree(REFERENCE, folder)
    before = (folder / "summary.csv").read_bytes()
    proc = _report(folder, "--output", str(folder / "summary.csv"))
    assert proc.returncode == 2 and "summary.csv" in proc.stderr and (folder / "summary.csv").read_bytes() == before
    committed = (folder / "report.html").read_bytes()
    proc = _report(folder, "--output", "")
    assert proc.returncode == 2 and "empty" in proc.stderr and (folder / "report.html").read_bytes() == committed
    assert _report(tmp_path / "nowhere").returncode == 2
    summary = pd.read_csv(folder / "summary.csv")
    summary.drop(columns=["seeds"]).to_csv(folder / "summary.csv", index=False)
    proc = _report(folder)
    assert proc.returncode == 2 and "summary: missing column(s) seeds" in proc.stderr, proc.stderr
    summary.assign(test_err_mean="eleven").to_csv(folder / "summary.csv", index=False)
    proc = _report(folder)
    assert proc.returncode == 2 and "column test_err_mean holds 'eleven'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_diverged_run_leaves_no_gap_and_a_twice_listed_baseline_gives_one(tmp_path):
    summary = pd.DataFrame(
        {
            "row": ["f", "f2", "w"],
            "method": ["fp32", "fp32", "w1"],
            "recipe": ["r", "r", "r"],
            "dataset": "fashion_mnist",
            "arch": "wrn",
            "depth": 8,
            "width": 1.0,
            "test_err_mean": [0.0] * 3,
        }
    )
    runs = [("f", s, 10.0 + s) for s in range(3)] + [("f2", s, 10.0 + s) for s in range(3)]
    g = paired_gaps(summary, _runs(*runs, ("w", 0, 12.0), ("w", 1, 13.0), ("w", 2, 14.5)))
    assert len(g) == 1 and g.loc[0, "fp32_row"] == "f" and g.loc[0, "gap"] == pytest.approx(2.1666667)
    diverged = _runs(*runs, ("w", 0, 12.0), ("w", 1, float("nan")), ("w", 2, 14.5))
    g = paired_gaps(summary, diverged)
    assert pd.isna(g.loc[0, "gap"]) and g.loc[0, "pairs"] == 0  # not a gap over the seeds that did not diverge
    from onebit.grid import load_grid
    from onebit.report.tables import summarize

    head = "row\ttable\tdataset\tarch\tdepth\twidth\tmethod\tepochs\tseeds\n"
    body = "".join(f"{r}\tt\tfashion_mnist\twrn\t8\t1\t{m}\t3\t0,1,2\n" for r, m in (("f", "fp32"), ("w", "w1")))
    (tmp_path / "g.tsv").write_text(head + body)
    grid = load_grid(tmp_path / "g.tsv", check=False)
    metrics = diverged[diverged["row"] != "f2"].assign(epoch_seconds=1.0)
    s = summarize(metrics, grid, load_published(CONFIG / "published.tsv")).set_index("row")
    assert s.loc["w", "diverged"] == 1 and pd.isna(s.loc["w", "test_err_mean"]) and s.loc["w", "seeds"] == 3
    assert s.loc["f", "diverged"] == 0 and s.loc["f", "test_err_mean"] == 11.0
