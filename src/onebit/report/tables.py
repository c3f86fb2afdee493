"""Tidy tables from run directories and memory measurements (pure pandas).

* :func:`tidy_metrics`: every line of every ``metrics.jsonl``, plus the grid row id.
* :func:`summarize`: final test error per grid row, mean and std over seeds,
  joined with the published value (same source, table, row and dataset) and the
  difference.
* :func:`gaps`: the paper's comparisons as differences against the 32-bit row of
  the same dataset and width: ``w1 - fp32`` (1-bit gap), ``cl - fp32`` ...
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, InconsistentRun
from ..runschema import check_run


def tidy_metrics(final_paths: list, grid: pd.DataFrame) -> pd.DataFrame:
    """Every metrics line of every run, with its grid row id and the grid's columns
    that place it in the report (table, published row, memory measurement). Each run is
    checked first: its ``final.json`` must describe the run its grid row and seed ask
    for, and its metrics must agree with its ``final.json``."""
    frames = []
    for path in final_paths:
        run = Path(path).parent
        row_id, seed = run.parent.name, run.name.removeprefix("seed")
        final, lines, env = check_run(run)  # the run-directory contract (docs/run-directory.md)
        df = pd.DataFrame(lines)
        if "epoch_seconds" not in df:
            df["epoch_seconds"] = 0.0  # optional: a producer that does not time its epochs
        _check_against_grid(run, final, grid.loc[row_id] if row_id in grid.index else None, seed)
        _check_against_final(run, df, final)
        df.insert(0, "row", row_id)
        for col in PROVENANCE:
            df[col] = env.get(col)
        frames.append(df)
    metrics = pd.concat(frames, ignore_index=True)
    cols = ["row", "table", "paper_source", "paper_table", "paper_row", "memory"]
    return metrics.merge(grid[cols].reset_index(drop=True), on="row", how="left")


#: where and with what each run ran, from its ``env.json``: on every line of the tidy tables,
#: so that tables of several machines concatenate and stay distinguishable
PROVENANCE = ["device", "device_name", "torch_version", "git_revision", "git_dirty", "hostname"]


def _check_against_grid(run: Path, final: dict, row, seed: str) -> None:
    """The run must be the one its grid row and seed ask for (a run copied from another
    row, or a grid edited after its runs finished, would be silently mislabelled)."""
    from ..grid import RUN_COLUMNS

    if row is None:
        raise InconsistentRun(f"{run}: the grid has no row {run.parent.name!r}")
    wanted = {c: row[c] for c in RUN_COLUMNS if c in final}
    if "seed" in final:  # a producer may leave it out: the directory names the seed
        wanted["seed"] = int(seed) if seed.isdigit() else seed
    differ = {c: (final.get(c), v) for c, v in wanted.items() if final.get(c) != v}
    if differ:
        raise InconsistentRun(
            f"{run}: its final.json is not the run the grid asks for (field: (run, grid): {differ}). The grid was "
            "edited after the run finished, or the run was copied from elsewhere: delete the run directory (or "
            "restore the grid) and run the pipeline again."
        )


def _check_against_final(run: Path, metrics: pd.DataFrame, final: dict) -> None:
    test = metrics[metrics["split"] == "test"] if "split" in metrics else metrics.iloc[0:0]
    problems = []
    if test.empty:
        problems.append("no test line")
    else:
        last = test.loc[test["epoch"].idxmax()]
        if int(last["epoch"]) != final.get("epochs_done"):
            problems.append(f"last epoch {int(last['epoch'])}, final.json says {final.get('epochs_done')}")
        if not math.isclose(last["top1_err"], final.get("test_top1_err", math.nan), rel_tol=1e-12):
            problems.append(f"last test error {last['top1_err']}, final.json says {final.get('test_top1_err')}")
        expected = list(range(1, int(last["epoch"]) + 1))
        if sorted(test["epoch"]) != expected:
            problems.append("missing or repeated test epochs")
        if sorted(metrics[metrics["split"] == "train"]["epoch"]) != expected:
            problems.append("missing or repeated train epochs")
    if problems:
        raise InconsistentRun(
            f"{run}: metrics.jsonl disagrees with final.json ({'; '.join(problems)}): the run directory "
            "was damaged or mixed. Delete the run directory and run the pipeline again to retrain it."
        )


#: the columns of config/published.tsv
PUBLISHED_COLUMNS = [
    "source",
    "table",
    "row",
    "method",
    "arch",
    "depth",
    "width",
    "params",
    "epochs",
    "dataset",
    "metric",
    "value",
]


def load_published(path) -> pd.DataFrame:
    """The published numbers (config/published.tsv), checked: every column there, every value a number."""
    try:
        pub = pd.read_csv(path, sep="\t", dtype={"value": float})
    except ValueError as e:
        raise ConfigError(
            f"{path}: not a table of published numbers ({e}); every 'value' must be a number "
            "(see config/published.tsv)."
        ) from None
    missing = [c for c in PUBLISHED_COLUMNS if c not in pub.columns]
    if missing:
        raise ConfigError(
            f"{path}: missing column(s) {', '.join(missing)}; a table of published numbers has the "
            f"tab-separated columns {', '.join(PUBLISHED_COLUMNS)} (see config/published.tsv)."
        )
    return pub.rename(columns={"source": "paper_source", "table": "paper_table", "row": "paper_row"})


def summarize(metrics: pd.DataFrame, grid: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """One line per grid row: final test error (mean, std, n over seeds) vs the paper.

    ``recipe`` identifies everything a row's runs share but the method (its run columns
    without ``method``): rows of one recipe differ only in the method, so their errors
    compare (see :func:`gaps`)."""
    from ..grid import RUN_COLUMNS
    from .stats import mean_interval

    last = final_errors(metrics)
    agg = last.groupby("row").agg(
        test_err_mean=("top1_err", "mean"),
        test_err_std=("top1_err", "std"),
        seeds=("seed", "nunique"),
        epochs_done=("epoch", "max"),
    )
    interval = last.groupby("row")["top1_err"].apply(lambda v: mean_interval(v)[3:])
    agg["test_err_low"] = interval.map(lambda t: t[0])
    agg["test_err_high"] = interval.map(lambda t: t[1])
    # a run whose final error is not a number (diverged) leaves its row without a result,
    # rather than a mean over the other seeds that reads as the row's
    agg["diverged"] = last.groupby("row")["top1_err"].apply(lambda v: int((~v.map(math.isfinite)).sum()))
    agg.loc[agg["diverged"] > 0, ["test_err_mean", "test_err_std", "test_err_low", "test_err_high"]] = math.nan
    if "top5_err" in last:
        agg["test_top5_mean"] = last.groupby("row")["top5_err"].mean()
    agg["wall_seconds"] = metrics.groupby("row")["epoch_seconds"].sum() / agg["seeds"]
    for col in PROVENANCE:  # each row's machines and code: every distinct value, joined
        if col in metrics:
            agg[col] = metrics.groupby("row")[col].agg(lambda v: ", ".join(sorted({str(x) for x in v.dropna()})))
    cols = [
        "row",
        "table",
        "dataset",
        "arch",
        "depth",
        "width",
        "method",
        "epochs",
        "train_subset",
        "test_subset",
        "paper_source",
        "paper_table",
        "paper_row",
        "memory",
    ]
    out = grid[cols].reset_index(drop=True)
    out["recipe"] = [
        json.dumps({c: _plain(r[c]) for c in RUN_COLUMNS if c != "method"}, sort_keys=True) for _, r in grid.iterrows()
    ]
    out = out.merge(agg.reset_index(), on="row", how="left")
    top1 = published[published["metric"] == "top1_err"][
        ["paper_source", "paper_table", "paper_row", "dataset", "value"]
    ].rename(columns={"value": "paper_err"})
    out = out.merge(top1, on=["paper_source", "paper_table", "paper_row", "dataset"], how="left")
    out["diff_vs_paper"] = out["test_err_mean"] - out["paper_err"]
    return out


def _plain(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def final_errors(metrics: pd.DataFrame) -> pd.DataFrame:
    """The last test line of every run (row, seed): its final test error."""
    return metrics[metrics["split"] == "test"].sort_values("epoch").groupby(["row", "seed"]).tail(1)


#: the columns of :func:`gaps`
GAP_COLUMNS = [
    "dataset",
    "arch",
    "depth",
    "width",
    "method",
    "row",
    "fp32_row",
    "fp32_err",
    "test_err_mean",
    "gap",
    "gap_sd",
    "pairs",
    "gap_low",
    "gap_high",
]


def gaps(summary: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Each method's error minus the 32-bit error of the same recipe (dataset, network,
    schedule, augmentation: every run field but the method), paired per seed: for every
    seed both rows ran, the method's final error minus fp32's. ``gap`` is the mean of
    those differences over ``pairs`` seeds, ``gap_sd`` their standard deviation and
    ``gap_low``..``gap_high`` the 95 % Student-t interval of the mean (none for one
    pair); ``fp32_err`` and ``test_err_mean`` are the means over the paired seeds."""
    from .stats import mean_interval

    last = final_errors(metrics).set_index(["row", "seed"])["top1_err"]
    # one baseline per recipe: the first 32-bit row (a grid may list the same baseline under
    # two tables; fp32_row names the one used)
    base = (
        summary[summary["method"] == "fp32"][["recipe", "row"]]
        .drop_duplicates("recipe")
        .rename(columns={"row": "fp32_row"})
    )
    out = summary[summary["method"] != "fp32"].merge(base, on="recipe", how="inner")
    rows, ran = [], set(last.index.get_level_values("row"))
    for r in out.itertuples():
        mine = last.xs(r.row, level="row") if r.row in ran else pd.Series(dtype=float)
        ref = last.xs(r.fp32_row, level="row") if r.fp32_row in ran else mine[:0]
        seeds = sorted(set(mine.index) & set(ref.index))
        diffs = [mine[s] - ref[s] for s in seeds]
        if any(not math.isfinite(d) for d in diffs):  # a diverged run: no gap, rather than one without it
            diffs = [math.nan]
        mean, sd, n, low, high = mean_interval(diffs)
        rows.append(
            {
                "fp32_err": ref[seeds].mean() if seeds else math.nan,
                "test_err_mean": mine[seeds].mean() if seeds else math.nan,
                "gap": mean,
                "gap_sd": sd,
                "pairs": n,
                "gap_low": low,
                "gap_high": high,
            }
        )
    values = pd.DataFrame(rows, index=out.index, columns=GAP_COLUMNS[7:])
    out = pd.concat([out.drop(columns=[c for c in values.columns if c in out.columns]), values], axis=1)
    return out[GAP_COLUMNS].reset_index(drop=True)


def paper_gaps(published: pd.DataFrame) -> pd.DataFrame:
    """The same differences in the published numbers: a row's value minus the 32-bit
    value of the same source, dataset, metric, network and epochs ([P]'s "++" (cutout)
    rows only with each other)."""
    pub = published[published["metric"].isin(["top1_err", "top5_err"])].copy()
    pub["variant"] = pub["paper_row"].str.endswith("-cutout").map({True: "cutout", False: ""})
    keys = ["paper_source", "dataset", "metric", "arch", "depth", "width", "epochs", "variant"]
    pub[keys] = pub[keys].astype(str)  # empty cells compare equal
    base = pub[pub["method"] == "fp32"][keys + ["value"]].drop_duplicates(keys).rename(columns={"value": "fp32_err"})
    out = pub[pub["method"] != "fp32"].merge(base, on=keys, how="inner")
    out["gap"] = out["value"] - out["fp32_err"]
    return out[keys + ["method", "paper_table", "paper_row", "fp32_err", "value", "gap"]].rename(
        columns={"value": "err"}
    )


STEP_COLUMNS = ["device", "step_seconds", "step_ratio_vs_fp32", "largest_batch", "budget_bytes", "state_bytes"]


def memory_table(json_paths: list) -> pd.DataFrame:
    """Tidy memory table: one line per (measurement, method, quantity, kind of bytes).

    Quantities: ``paper accounting`` (inputs of weight layers at the method's
    precision), ``autograd keeps`` (total and per kind) and ``step peak`` (the
    allocator's peak of a real training step above model and optimizer state).
    ``ratio_vs_fp32`` is fp32's total over the method's, per quantity. The step time,
    its ratio to fp32 and the largest batch within the budget repeat on each line of
    their (measurement, method)."""
    rows = []
    for path in json_paths:
        name = Path(path).stem
        for r in json.loads(Path(path).read_text()):
            n = r["batch_size"]
            common = {
                "measurement": name,
                "arch": r["arch"],
                "method": r["method"],
                "batch_size": n,
                "input_shape": "x".join(map(str, r["input_shape"])),
                "activation_bits": r["activation_bits"],
                "paper_values_per_image": r["paper_values_per_image"],
                "weight_bits": r.get("weight_bits"),
                "description": r.get("description"),
                **{c: r.get(c) for c in STEP_COLUMNS},
            }
            rows.append(
                {**common, "quantity": "paper accounting", "kind": "total", "bytes_per_image": r["paper_bytes"] / n}
            )
            rows.append(
                {**common, "quantity": "autograd keeps", "kind": "total", "bytes_per_image": r["saved_bytes"] / n}
            )
            for kind, b in r["saved_breakdown"].items():
                rows.append({**common, "quantity": "autograd keeps", "kind": kind, "bytes_per_image": b / n})
            if r.get("peak_bytes") is not None:
                rows.append(
                    {**common, "quantity": "step peak", "kind": "total", "bytes_per_image": r["peak_bytes"] / n}
                )
    columns = [
        "measurement",
        "arch",
        "method",
        "batch_size",
        "input_shape",
        "activation_bits",
        "paper_values_per_image",
        "weight_bits",
        "description",
        *STEP_COLUMNS,
        "quantity",
        "kind",
        "bytes_per_image",
    ]
    df = pd.DataFrame(rows, columns=columns)  # a grid without memory measurements: no rows
    total = df[df["kind"] == "total"]
    fp32 = total[total["method"] == "fp32"].set_index(["measurement", "quantity"])["bytes_per_image"]
    df["ratio_vs_fp32"] = [
        fp32.get((m, q), float("nan")) / b if k == "total" and b else float("nan")
        for m, q, k, b in zip(df["measurement"], df["quantity"], df["kind"], df["bytes_per_image"])
    ]
    return df


def fidelity_table(json_path) -> pd.DataFrame:
    """Tidy gradient-fidelity table: one line per (method, layer), errors relative to
    the exact gradient's norm (see :mod:`onebit.measure.fidelity`)."""
    rows = json.loads(Path(json_path).read_text())
    return pd.DataFrame(rows, columns=FIDELITY_COLUMNS)


#: the columns of :func:`fidelity_table`
FIDELITY_COLUMNS = [
    "method",
    "layer",
    "index",
    "params",
    "exact_norm",
    "bias",
    "std",
    "rmse",
    "noise_floor",
    "draws",
    "seed",
    "network",
    "batch",
    "batch_size",
]
