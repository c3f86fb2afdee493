"""Figures: pure functions of the tidy tables (:mod:`onebit.report.tables`) -> matplotlib Figure.

Every figure gives each method the same colour (its registered ``color``: the paper's
methods in strong hues, comparators grey and brown, peers in a separate family of hues,
ablations yellow and olive; methods without one get distinct dark hues), lists methods in
one order (by family, :func:`onebit.methods.ordered`), writes method names along the y axis
(horizontal: no overlapping labels), and draws the peers, whose errors are tens of
points higher at these budgets, in a panel of their own so that they do not squash the
scale of the 0-3 point gaps that matter.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: E402

from ..methods import FAMILIES, METHODS  # noqa: E402
from ..methods import ordered as _order  # noqa: E402
from ..units import format_bytes  # noqa: E402

_EXTRA = sns.color_palette("dark", 10).as_hex()


def palette(methods) -> dict:
    """Method -> colour: its registered ``color``; methods without one (plugins, or names not
    registered in this process) get distinct dark hues."""
    extra = iter(_EXTRA)
    return {m: (METHODS.get(m).color if m in METHODS else None) or next(extra, "#444444") for m in _order(methods)}


def _group(methods: pd.Series) -> pd.Series:
    """The figure panel of each method: the peers apart, everything else together."""
    return methods.map(
        lambda m: (
            FAMILIES["peer"] if m in METHODS and METHODS.get(m).family == "peer" else "the paper's methods and others"
        )
    )


def _empty(text: str, figsize=(6.4, 1.6)) -> plt.Figure:
    """A figure that says why there is nothing to plot."""
    fig, ax = plt.subplots(figsize=figsize)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def _label(df: pd.DataFrame) -> pd.Series:
    from .text import dataset_name, network

    return df["dataset"].map(dataset_name) + " " + df.apply(network, axis=1)


def _cycle_ends(part: pd.DataFrame) -> list:
    """The epochs after which a warm-restart cycle ends (the learning rate restarts and,
    in the official recipe, the BN statistics are re-estimated) for these runs' t0, tmult."""
    from ..schedule import is_cycle_end

    if not {"t0", "tmult"} <= set(part.columns) or part.empty:
        return []
    t0, tmult, last = int(part["t0"].iloc[0]), int(part["tmult"].iloc[0]), int(part["epoch"].max())
    return [e for e in range(1, last + 1) if is_cycle_end(e, t0, tmult)]


def error_curves(metrics: pd.DataFrame) -> plt.Figure:
    """Test error per epoch per method, one panel per dataset and network (the peers in
    panels of their own): the mean over seeds (thick), each seed (thin), the epochs where a
    warm-restart cycle ends (dotted lines) and the evaluations after a BN re-estimation
    (squares); in between, evaluation uses the running BN averages of a cycle in progress."""
    test = metrics[metrics["split"] == "test"].copy()
    if test.empty:
        return _empty("no test evaluations in this grid's runs")
    test["network"] = _label(test)
    test["group"] = _group(test["method"])
    panels = sorted(test.groupby(["network", "group"]).groups, key=lambda k: (k[0], k[1].startswith("peers")))
    pal = palette(test["method"])
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 3.6 * rows), squeeze=False)
    for ax, (net, group) in zip(axes.flat, panels):
        part = test[(test["network"] == net) & (test["group"] == group)]
        order = _order(part["method"])
        for (method, _seed), run in part.groupby(["method", "seed"]):
            ax.plot(run["epoch"], run["top1_err"], color=pal[method], lw=0.7, alpha=0.35)
        mean = part.groupby(["method", "epoch"], as_index=False)["top1_err"].mean()
        for method in order:
            m = mean[mean["method"] == method]
            ax.plot(m["epoch"], m["top1_err"], color=pal[method], lw=2, marker="o", ms=4, label=method)
        if "bn_stats" in part:
            re_est = part[part["bn_stats"] == "reestimated"]
            re_mean = re_est.groupby(["method", "epoch"], as_index=False)["top1_err"].mean()
            ax.scatter(
                re_mean["epoch"], re_mean["top1_err"], marker="s", s=40, facecolors="none", edgecolors="k", zorder=5,
                label="after BN re-estimation",
            )  # fmt: skip
        ends = _cycle_ends(part)
        for i, e in enumerate(ends):
            ax.axvline(e, color="grey", ls=":", lw=1, label="warm-restart cycle ends" if i == 0 else None)
        epochs = sorted(part["epoch"].unique())
        ax.set_xticks(epochs if len(epochs) <= 12 else ax.get_xticks())
        if len(epochs) == 1:
            ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
        ax.set_title(f"{net}\n{group}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test error (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for ax in axes.flat[len(panels) :]:
        ax.set_axis_off()
    fig.suptitle("Test error per epoch: mean over seeds (thick), each seed (thin)")
    fig.tight_layout()
    return fig


def _final(summary: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    last = metrics[metrics["split"] == "test"].sort_values("epoch").groupby(["row", "seed"]).tail(1).copy()
    last = last.merge(summary[["row", "paper_err"]], on="row", how="left")
    last["network"] = _label(last)
    return last


def error_vs_paper(summary: pd.DataFrame, metrics: pd.DataFrame) -> plt.Figure:
    """Final test error per method (one line each) and network (colour); the published
    value of the same row and dataset as a black cross where the paper gives one."""
    last = _final(summary, metrics)
    groups = [
        g
        for g in ("the paper's methods and others", "peers (their own definitions)")
        if g in set(_group(last["method"]))
    ]
    nets = sorted(last["network"].unique())
    netpal = dict(zip(nets, sns.color_palette("colorblind", len(nets))))
    heights = [len(set(last[_group(last["method"]) == g]["method"])) for g in groups]
    fig, axes = plt.subplots(
        len(groups),
        1,
        figsize=(7.5, 0.42 * sum(heights) + 1.6 * len(groups)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, group in zip(axes[:, 0], groups):
        part = last[_group(last["method"]) == group]
        order = _order(part["method"])
        sns.pointplot(
            data=part,
            y="method",
            x="top1_err",
            hue="network",
            hue_order=nets,
            palette=netpal,
            order=order,
            errorbar="sd",
            dodge=0.4 if len(nets) > 1 else False,
            linestyles="none",
            markers="o",
            ax=ax,
        )
        pub = summary[summary["method"].isin(order)].dropna(subset=["paper_err"])
        if len(pub):
            tol = _tolerances()
            band = pub["dataset"].map(tol)
            ax.hlines(
                [order.index(m) for m in pub["method"]],
                pub["paper_err"] - band.fillna(0),
                pub["paper_err"] + band.fillna(0),
                colors="k",
                lw=6,
                alpha=0.15,
                label="published ± tolerance",
            )
            ax.scatter(
                pub["paper_err"],
                [order.index(m) for m in pub["method"]],
                marker="x",
                color="k",
                s=60,
                label="published",
                zorder=5,
            )
        ax.set_xlabel("final test error (%)")
        ax.set_ylabel("")
        ax.set_title(group, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    published = summary.dropna(subset=["paper_err"]) if "paper_err" in summary else summary[:0]
    fig.suptitle(
        "Final test error (mean ± sd over seeds)"
        + (
            "; x = published value of the same row and dataset, grey = its tolerance"
            if len(published)
            else "\n(no row of this grid runs on the data of a published number: no published value to draw)"
        )
    )
    fig.tight_layout()
    return fig


def _tolerances() -> dict:
    """Dataset -> tolerance of config/claims.yaml (the repository's), for the bands."""
    from pathlib import Path

    from .claims import load_claims

    try:
        return load_claims(Path(__file__).resolve().parents[3] / "config" / "published.tsv").tolerance
    except Exception:  # a checkout without config/: no band, the crosses alone
        return {}


def gap_vs_baseline(ours: pd.DataFrame, paper: pd.DataFrame, summary: pd.DataFrame) -> plt.Figure:
    """Each method's gap to the 32-bit row of the same recipe: this grid's rows (dots, one
    colour per network) and the published gaps of the paper rows the grid's rows stand
    for (crosses), one line per method."""
    links = set(zip(summary["paper_source"], summary["paper_table"], summary["paper_row"]))
    top1 = paper[(paper["metric"] == "top1_err")] if "metric" in paper else paper
    top1 = top1[[k in links for k in zip(top1["paper_source"], top1["paper_table"], top1["paper_row"])]]
    if ours.empty and top1.empty:
        return _empty("no method next to a 32-bit row of the same recipe in this grid")
    a = ours.assign(network=_label(ours))
    methods = list(a["method"]) + list(top1["method"])
    groups = [
        g
        for g in ("the paper's methods and others", "peers (their own definitions)")
        if g in set(_group(pd.Series(methods)))
    ]
    heights = [len(set(m for m in methods if _group(pd.Series([m]))[0] == g)) for g in groups]
    fig, axes = plt.subplots(
        len(groups),
        1,
        figsize=(8, 0.45 * sum(heights) + 1.8 * len(groups)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    nets = sorted(a["network"].unique())
    pal = dict(zip(nets, sns.color_palette("colorblind", len(nets))))
    for ax, group in zip(axes[:, 0], groups):
        order = _order([m for m in methods if _group(pd.Series([m]))[0] == group])
        part = a[a["method"].isin(order)]
        if len(part):
            sns.stripplot(
                data=part,
                y="method",
                x="gap",
                hue="network",
                hue_order=nets,
                palette=pal,
                order=order,
                jitter=0.12,
                size=7,
                ax=ax,
            )
        bars = part.dropna(subset=["gap_low", "gap_high"]) if "gap_low" in part else part[:0]
        if len(bars):
            ax.hlines(
                [order.index(m) for m in bars["method"]],
                bars["gap_low"],
                bars["gap_high"],
                colors=[pal[n] for n in bars["network"]],
                lw=2,
                alpha=0.6,
                label="95 % interval (paired seeds)",
            )
        pub = top1[top1["method"].isin(order)]
        ax.scatter(
            pub["gap"],
            [order.index(m) for m in pub["method"]],
            marker="x",
            color="k",
            s=55,
            zorder=5,
            label="published gap of the row it stands for",
        )
        from .text import dataset_name

        for r in pub.itertuples():  # which paper dataset each cross is
            ax.annotate(
                dataset_name(r.dataset), (r.gap, order.index(r.method)), xytext=(0, 7), textcoords="offset points",
                fontsize=6, ha="center",
            )  # fmt: skip
        ax.set_yticks(range(len(order)), order)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_xlabel("method − 32-bit test error (percentage points)")
        ax.set_ylabel("")
        ax.set_title(group, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle("Gap to the 32-bit network of the same recipe: this grid (dots, 95 % interval) and the papers (x)")
    fig.tight_layout()
    return fig


MEMORY_QUANTITIES = ["paper accounting", "autograd keeps", "step peak"]


def pareto_front(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The lines of ``df`` no other line beats on both ``x`` and ``y`` (less is better),
    sorted by ``x``; of lines equal on both, the first."""
    front, best = [], float("inf")
    for i, r in df.sort_values([x, y], kind="stable").iterrows():
        if r[y] < best:
            front.append(i)
            best = r[y]
    return df.loc[front]


def error_vs_memory(summary: pd.DataFrame, memory: pd.DataFrame) -> plt.Figure:
    """Final test error (mean, 95 % interval over seeds) against what autograd keeps for
    backward per image, one point per method, one panel per network the grid trains and
    measures (the grid's ``memory`` column names the measurement of a row's network); the
    Pareto front (no other method keeps less and errs less) joined by a line."""
    kept = memory[(memory["quantity"] == "autograd keeps") & (memory["kind"] == "total")] if len(memory) else memory
    if kept.empty or "memory" not in summary:
        return _empty("no memory measurement of a network this grid trains (the grid's memory column)")
    rows = summary.dropna(subset=["memory", "test_err_mean"])
    pts = rows.merge(
        kept[["measurement", "method", "bytes_per_image"]],
        left_on=["memory", "method"],
        right_on=["measurement", "method"],
        how="inner",
    )
    if pts.empty:
        return _empty("no row of this grid has a memory measurement of its own network and method")
    pts = pts.assign(network=_label(pts))
    panels = sorted(pts["network"].unique())
    pal = palette(pts["method"])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.2), squeeze=False)
    for ax, net in zip(axes[0], panels):
        part = pts[pts["network"] == net].sort_values("bytes_per_image")
        for r in part.itertuples():
            low, high = getattr(r, "test_err_low", None), getattr(r, "test_err_high", None)
            err = None if low is None or pd.isna(low) else [[r.test_err_mean - low], [high - r.test_err_mean]]
            ax.errorbar(
                r.bytes_per_image, r.test_err_mean, yerr=err, fmt="o", color=pal[r.method], ms=7, capsize=3,
                label=r.method,
            )  # fmt: skip
            ax.annotate(r.method, (r.bytes_per_image, r.test_err_mean), xytext=(5, 4), textcoords="offset points",
                        fontsize=7)  # fmt: skip
        front = pareto_front(part, "bytes_per_image", "test_err_mean")
        ax.plot(front["bytes_per_image"], front["test_err_mean"], "k--", lw=1, alpha=0.6, label="Pareto front")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: format_bytes(v, digits=3)))
        ax.set_xlabel(f"kept for backward per image (autograd, measured: {part['memory'].iloc[0]}; log scale)")
        ax.set_ylabel("final test error (%)")
        ax.set_title(net, fontsize=10)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        keep = dict(zip(labels, handles))
        ax.legend(keep.values(), keep.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("Test error against memory kept for backward (mean, 95 % interval over seeds)")
    fig.tight_layout()
    return fig


def memory_per_method(memory: pd.DataFrame) -> plt.Figure:
    """Bytes per image per method, three measurements side by side (the paper's
    accounting, what autograd keeps, the peak of a real training step), log scale in
    binary units, one panel per network."""
    tot = memory[memory["kind"] == "total"].copy()
    if tot.empty:
        return _empty("no memory measurement configured for this grid (memory: in config/config.yaml)")
    hue_order = [q for q in MEMORY_QUANTITIES if q in set(tot["quantity"])]
    n = tot["measurement"].nunique()
    g = sns.catplot(
        data=tot,
        y="method",
        x="bytes_per_image",
        hue="quantity",
        hue_order=hue_order,
        palette="colorblind",
        col="measurement",
        col_wrap=min(n, 2),
        order=_order(tot["method"]),
        kind="bar",
        height=0.28 * tot["method"].nunique() + 1.5,
        aspect=1.5,
        sharex=False,
    )
    for ax in g.axes.flat:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(LogLocator(base=4))  # 64 KiB, 256 KiB, 1 MiB, 4 MiB, ...
        ax.xaxis.set_minor_locator(LogLocator(base=2))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: format_bytes(v, digits=3)))
        ax.grid(axis="x", alpha=0.3)
    g.set_titles("{col_name}")
    g.set_axis_labels("bytes per image (log scale)", "")
    g.figure.suptitle("Training memory per image: three measurements", y=1.02)
    return g.figure


def gradient_fidelity(fidelity: pd.DataFrame) -> plt.Figure:
    """Bias and spread of each method's weight gradient per layer, relative to the
    exact gradient's norm (log scale); the dotted line is the bias that the finite
    number of draws shows even for an unbiased method."""
    if fidelity.empty:
        return _empty("no gradient-fidelity measurement configured for this grid")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    df = fidelity[fidelity["exact_norm"] > 0].copy()
    pal = palette(df["method"])
    layers = df.drop_duplicates("index").sort_values("index")["layer"].tolist()
    for ax, col, title in zip(axes, ["bias", "std"], ["bias: |mean gradient - exact|", "spread of one draw"]):
        shown = df[df[col] > 0]  # a log axis cannot show 0: such methods are named in the title
        zero = [m for m in pal if m in set(df["method"]) and not (df.loc[df["method"] == m, col] > 0).any()]
        if zero:
            title += f"\n(0 for {', '.join(zero)}: not shown)"
        sns.lineplot(
            data=shown, x="layer", y=col, hue="method", hue_order=list(pal), palette=pal, marker="o", ax=ax, sort=False
        )
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
