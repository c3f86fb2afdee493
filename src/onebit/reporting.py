"""Tables and text of the report, from the tidy tables (used by the report notebook).

Every sentence about results is computed from the data it describes; nothing here
holds a result.
"""

from __future__ import annotations

import pandas as pd

from .memory import format_bytes as _bytes

TABLES = {
    "slide16": "Model compression: 1-bit weights at test time (CIFAR, [W] slide 16)",
    "slide17": "ImageNet, ResNet-18 ([W] slide 17)",
    "slide18": "Compressed learning (CIFAR, [W] slide 18)",
}
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet",
                 "fashion_mnist": "Fashion-MNIST"}


def network(row) -> str:
    if row["arch"] == "wrn":
        return f"WRN-{int(row['depth'])}-{float(row['width']):g}"
    return {"resnet18": "ResNet-18"}.get(row["arch"], row["arch"])


def _pm(mean, std) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


def reproduced_table(summary: pd.DataFrame, table: str) -> pd.DataFrame:
    """This grid's rows of one paper table (its ``table`` column) and the 32-bit rows
    of the same datasets and networks."""
    s = summary.copy()
    s["network"] = s.apply(network, axis=1)
    mine = s[s["table"].eq(table)]
    if mine.empty:
        return mine
    base = s[(s["method"] == "fp32") & s["dataset"].isin(mine["dataset"]) & s["network"].isin(mine["network"])]
    out = pd.concat([base, mine]).drop_duplicates("row")
    return pd.DataFrame({
        "row": out["row"], "dataset": out["dataset"].map(DATASET_NAMES).fillna(out["dataset"]),
        "network": out["network"], "method": out["method"], "epochs": out["epochs"],
        "seeds": out["seeds"].astype("Int64"),
        "test error % (mean ± sd)": [_pm(m, sd) for m, sd in zip(out["test_err_mean"], out["test_err_std"])],
        "paper %": out["paper_err"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}"),
        "difference": out["diff_vs_paper"].map(lambda v: "" if pd.isna(v) else f"{v:+.2f}"),
    }).reset_index(drop=True)


def published_table(published: pd.DataFrame, table: str) -> pd.DataFrame:
    """The paper's table as published, each row marked as the paper's own result,
    a quoted reference, or a number quoted from another paper."""
    p = published[(published["paper_table"] == table) |
                  ((table in ("slide16", "slide18")) & (published["paper_table"] == "abstract"))]
    if p.empty:
        return p

    def kind(r):
        if r.endswith("-published"):
            return "quoted from another paper (other network)"
        if r.startswith("reference"):
            return "quoted reference"
        return "the paper's result"

    index = ["paper_source", "paper_row", "method", "arch", "depth", "width"]
    p = p.assign(**{c: p[c].map(lambda v: "" if pd.isna(v) else f"{v:g}" if isinstance(v, float) else v)
                    for c in ("depth", "width")})
    wide = p.pivot_table(index=index, columns=["dataset", "metric"], values="value", aggfunc="first", sort=False)
    wide.columns = [f"{DATASET_NAMES.get(d, d)} {m.replace('_err', '')} %" for d, m in wide.columns]
    wide = wide.reset_index().dropna(axis=1, how="all")
    wide.insert(1, "kind", wide["paper_row"].map(kind))
    return wide.fillna("")


def gap_text(gaps: pd.DataFrame, paper_gaps: pd.DataFrame, method: str, what: str) -> str:
    """One sentence: this grid's gap of ``method`` against 32-bit, and the paper's."""
    ours = gaps[gaps["method"] == method]
    theirs = paper_gaps[paper_gaps["method"] == method]
    if ours.empty:
        return f"This grid has no {method} row next to a 32-bit row, so its {what} is not measured here."
    parts = [f"{DATASET_NAMES.get(r.dataset, r.dataset)} WRN-{int(r.depth)}-{float(r.width):g}: {r.gap:+.2f}"
             for r in ours.itertuples()]
    text = f"Measured {what} ({method} − 32-bit, percentage points of test error): " + "; ".join(parts) + "."
    if len(theirs):
        ps = [f"{DATASET_NAMES.get(r.dataset, r.dataset)} WRN-{int(r.depth)}-{float(r.width):g} "
              f"({r.paper_source}): {r.gap:+.2f}" for r in theirs.itertuples()]
        text += " Published: " + "; ".join(ps) + "."
    return text


def table_text(table: str, summary: pd.DataFrame, gaps: pd.DataFrame, paper_gaps: pd.DataFrame,
               grid: str) -> str:
    rows = reproduced_table(summary, table)
    if rows.empty:
        return (f"The grid `{grid}` runs no row of this table; the published numbers are shown "
                "alone. Run `snakemake --cores all --config grid=paper` on a GPU machine with the data.")
    datasets = sorted(set(rows["dataset"]))
    text = [f"Rows run by the grid `{grid}` on {', '.join(datasets)}."]
    if "Fashion-MNIST" in datasets:
        text.append("These rows run on **Fashion-MNIST** (the real dataset available offline), with small "
                    "networks and few epochs: their errors are not comparable with the paper's CIFAR "
                    "numbers; what is compared is the *gap* each method opens against the 32-bit network.")
    for m in rows["method"].drop_duplicates():
        if m != "fp32":
            what = "compressed-learning gap" if table == "slide18" else "1-bit gap"
            text.append(gap_text(gaps, paper_gaps, m, what))
    missing = summary[summary["test_err_mean"].isna()]
    if len(missing):
        text.append(f"Rows without a result: {', '.join(missing['row'])}.")
    diffs = summary.dropna(subset=["diff_vs_paper"])
    diffs = diffs[diffs["row"].isin(rows["row"])]
    if len(diffs):
        worst = diffs.loc[diffs["diff_vs_paper"].abs().idxmax()]
        text.append(f"Largest difference from the published value: {worst['row']} "
                    f"({worst['diff_vs_paper']:+.2f} points).")
    return " ".join(text)


def memory_summary(memory: pd.DataFrame) -> pd.DataFrame:
    """Per measurement and method: the paper's accounting (per image and at batch 256),
    what autograd keeps per image, the peak of a training step per image, their
    ratios to fp32, the step-time ratio, the largest batch within the budget, and
    the largest kinds of bytes kept."""
    rows = []
    for (meas, method), g in memory.groupby(["measurement", "method"], sort=False):
        tot = g[g["kind"] == "total"].set_index("quantity")
        kept = tot.loc["autograd keeps"]
        kinds = g[(g["quantity"] == "autograd keeps") & (g["kind"] != "total")].sort_values(
            "bytes_per_image", ascending=False)
        peak = tot.loc["step peak"] if "step peak" in tot.index else None
        row = {
            "network": meas, "method": method, "bits kept per activation": int(kept["activation_bits"]),
            "paper: bytes at batch 256": _bytes(tot.loc["paper accounting", "bytes_per_image"] * 256),
            "autograd keeps / image": _bytes(kept["bytes_per_image"]),
            "x less than fp32": f"{kept['ratio_vs_fp32']:.1f}",
            "step peak / image": _bytes(peak["bytes_per_image"]) if peak is not None else "",
            "peak x less": f"{peak['ratio_vs_fp32']:.1f}" if peak is not None else "",
            "step time x fp32": _num(kept.get("step_ratio_vs_fp32"), "{:.2f}"),
            "largest batch": _num(kept.get("largest_batch"), "{:.0f}"),
            "largest parts kept": ", ".join(f"{k} {_bytes(b)}" for k, b in
                                            zip(kinds["kind"][:3], kinds["bytes_per_image"][:3]) if b > 0),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def _num(v, fmt: str) -> str:
    return "" if v is None or pd.isna(v) else fmt.format(v)


def same_budget(summary: pd.DataFrame, memory: pd.DataFrame) -> pd.DataFrame:
    """"Same network, same budget": per method, on the network the grid trains the
    most methods on (same data, schedule and seeds): test error, bits per weight,
    bits kept per activation for backward, and, from the memory measurement the
    grid names for that network (its ``memory`` column), what autograd keeps and the
    step peak as x less than fp32, and the step time as x fp32. Method properties
    come from the memory table (which every registered method, plugins included,
    is measured into)."""
    keys = ["dataset", "arch", "depth", "width"]
    counts = summary.groupby(keys, dropna=False)["method"].nunique()
    if counts.empty:
        return pd.DataFrame()
    key = counts.idxmax()  # the network with the most methods
    rows = summary[(summary[keys].fillna(-1) == pd.Series(key, index=keys).fillna(-1)).all(axis=1)]
    names = rows["memory"].dropna().unique()
    measurement = names[0] if len(names) else None
    tot = memory[(memory["kind"] == "total") & (memory["measurement"] == measurement)]
    out = []
    for r in rows.itertuples():
        mem = tot[tot["method"] == r.method].set_index("quantity")
        none = pd.Series(dtype=object)  # a method without a measurement: empty cells
        kept = mem.loc["autograd keeps"] if "autograd keeps" in mem.index else none
        peak = mem.loc["step peak"] if "step peak" in mem.index else none
        out.append({
            "method": r.method, "network": f"{network(r._asdict())}, {r.dataset}",
            "test error %": _pm(r.test_err_mean, r.test_err_std),
            "bits / weight": _num(kept.get("weight_bits"), "{:.0f}"),
            "bits kept / activation": _num(kept.get("activation_bits"), "{:.0f}"),
            f"kept x less ({measurement})": _num(kept.get("ratio_vs_fp32"), "{:.1f}"),
            "step peak x less": _num(peak.get("ratio_vs_fp32"), "{:.1f}"),
            "step time x fp32": _num(kept.get("step_ratio_vs_fp32"), "{:.2f}"),
            "description": kept.get("description", ""),
        })
    return pd.DataFrame(out)


def fidelity_summary(fidelity: pd.DataFrame) -> pd.DataFrame:
    """Per method: median over layers of the weight-gradient bias, spread and error
    (relative to the exact gradient's norm), and whether the bias stands above the
    noise floor of the finite number of draws."""
    if fidelity.empty:
        return pd.DataFrame()
    df = fidelity[fidelity["exact_norm"] > 0]
    g = df.groupby("method", sort=False)
    out = pd.DataFrame({
        "bias (median over layers)": g["bias"].median(), "spread of one draw": g["std"].median(),
        "error of one draw": g["rmse"].median(), "noise floor": g["noise_floor"].median(),
    })
    out["bias beyond noise"] = (g.apply(lambda d: (d["bias"] > 3 * d["noise_floor"] + 1e-12).mean(),
                                        include_groups=False) * 100).map("{:.0f}% of layers".format)
    out = out.sort_values("error of one draw")
    for c in out.columns[:4]:
        out[c] = out[c].map("{:.3f}".format)
    return out.reset_index()
