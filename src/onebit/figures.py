"""Figures: pure functions of the tidy tables (:mod:`onebit.analysis`) -> matplotlib Figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .methods import ordered as _order  # noqa: E402


def _empty(text: str, figsize=(6.4, 1.6)) -> plt.Figure:
    """A figure that says why there is nothing to plot."""
    fig, ax = plt.subplots(figsize=figsize)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def _label(df: pd.DataFrame) -> pd.Series:
    width = df["width"].map(lambda w: "" if pd.isna(w) else f"-{float(w):g}")
    depth = df["depth"].map(lambda d: "" if pd.isna(d) else f"-{int(d)}")
    return df["dataset"] + " " + df["arch"] + depth + width


def error_curves(metrics: pd.DataFrame) -> plt.Figure:
    """Test error per epoch per method, one panel per dataset and network."""
    test = metrics[metrics["split"] == "test"].copy()
    test["network"] = _label(test)
    g = sns.relplot(data=test, x="epoch", y="top1_err", hue="method", hue_order=_order(test["method"]),
                    col="network", kind="line", errorbar="sd", marker="o", facet_kws={"sharey": False},
                    height=3.2, aspect=1.2)
    g.set_titles("{col_name}")
    g.set_axis_labels("epoch", "test error (%)")
    g.figure.suptitle("Test error per epoch (mean ± sd over seeds)", y=1.03)
    return g.figure


def error_vs_paper(summary: pd.DataFrame, metrics: pd.DataFrame) -> plt.Figure:
    """Final test error per method and width; the paper's value as a black cross where published."""
    last = metrics[metrics["split"] == "test"].sort_values("epoch").groupby(["row", "seed"]).tail(1).copy()
    last = last.merge(summary[["row", "paper_err"]], on="row", how="left")
    last["network"] = _label(last)
    order = _order(last["method"])
    g = sns.catplot(data=last, x="method", y="top1_err", hue="network", order=order, kind="point",
                    errorbar="sd", dodge=0.3 if last["network"].nunique() > 1 else False, height=3.6, aspect=1.6, linestyles="none")
    pub = summary.dropna(subset=["paper_err"])
    if len(pub):
        g.ax.scatter([order.index(m) for m in pub["method"]], pub["paper_err"], marker="x", color="k",
                     s=60, label="paper", zorder=5)
        g.ax.legend(loc="best", fontsize=8)
    g.set_axis_labels("method", "final test error (%)")
    g.figure.suptitle("Final test error (mean ± sd over seeds); x = published value", y=1.03)
    return g.figure


def gap_vs_baseline(ours: pd.DataFrame, paper: pd.DataFrame) -> plt.Figure:
    """Each method's gap to the 32-bit network against the 32-bit error: ours and the paper's."""
    a = ours.assign(source="this suite: " + ours["dataset"], err=ours["test_err_mean"])
    b = paper.assign(source="paper: " + paper["dataset"] + " (" + paper["paper_source"] + ")")
    both = pd.concat([a[["source", "method", "fp32_err", "gap", "width"]],
                      b[["source", "method", "fp32_err", "gap", "width"]]], ignore_index=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.scatterplot(data=both, x="fp32_err", y="gap", hue="method", style="source",
                    hue_order=_order(both["method"]), s=70, ax=ax)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("32-bit test error (%)")
    ax.set_ylabel("method − 32-bit error (percentage points)")
    ax.set_title("Gap to the 32-bit network")
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return fig


MEMORY_QUANTITIES = ["paper accounting", "autograd keeps", "step peak"]


def memory_per_method(memory: pd.DataFrame) -> plt.Figure:
    """Bytes per image per method, three measurements side by side (the paper's
    accounting, what autograd keeps, the peak of a real training step), log scale,
    one panel per network."""
    tot = memory[memory["kind"] == "total"].copy()
    if tot.empty:
        return _empty("no memory measurement configured for this grid (memory: in config/config.yaml)")
    hue_order = [q for q in MEMORY_QUANTITIES if q in set(tot["quantity"])]
    g = sns.catplot(data=tot, x="method", y="bytes_per_image", hue="quantity", hue_order=hue_order,
                    col="measurement", order=_order(tot["method"]), kind="bar", height=3.4, aspect=1.3,
                    sharey=False)
    for ax in g.axes.flat:
        ax.set_yscale("log")
        ax.tick_params(axis="x", rotation=30)
    g.set_titles("{col_name}")
    g.set_axis_labels("method", "bytes per image (log)")
    g.figure.suptitle("Training memory per image: three measurements", y=1.03)
    return g.figure


def gradient_fidelity(fidelity: pd.DataFrame) -> plt.Figure:
    """Bias and spread of each method's weight gradient per layer, relative to the
    exact gradient's norm (log scale); the dotted line is the bias that the finite
    number of draws shows even for an unbiased method."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    if fidelity.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "no gradient-fidelity measurement configured for this grid",
                    ha="center", va="center", transform=ax.transAxes)
        return fig
    df = fidelity[fidelity["exact_norm"] > 0].copy()
    order = _order(df["method"])
    layers = df.drop_duplicates("index").sort_values("index")["layer"].tolist()
    for ax, col, title in zip(axes, ["bias", "std"], ["bias: |mean gradient - exact|",
                                                      "spread of one draw"]):
        shown = df[df[col] > 0] if col == "bias" else df
        sns.lineplot(data=shown, x="layer", y=col, hue="method", hue_order=order, marker="o", ax=ax,
                     sort=False)
        if col == "bias":
            floor = df.groupby("layer", sort=False)["noise_floor"].max().reindex(layers)
            ax.plot(layers, floor.values, ":", color="grey", label="noise floor (max)")
            ax.legend(fontsize=7)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("weight layer (input to output)")
        ax.set_ylabel("relative to the exact gradient's norm")
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    axes[1].get_legend().remove()
    fig.suptitle(f"Weight-gradient fidelity against exact backprop ({int(df['draws'].iloc[0])} draws)")
    fig.tight_layout()
    return fig


def save(fig: plt.Figure, path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
