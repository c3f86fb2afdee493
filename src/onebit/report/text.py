"""Tables and text of the report, from the tidy tables (used by the report notebook).

Every sentence about results is computed from the data it describes; nothing here
holds a result. Tables list ``fp32`` first and the methods in one order
(:func:`onebit.methods.ordered`: by family); bytes are binary units (KiB, MiB, GiB) throughout.
"""

from __future__ import annotations

import pandas as pd

from ..methods import ordered

#: the report's sections: grid ``table`` -> title
TABLES = {
    "slide16": "[W] slide 16: model compression, 1-bit weights at test time (CIFAR)",
    "slide17": "[W] slide 17: ImageNet, ResNet-18",
    "slide18": "[W] slide 18: compressed learning (CIFAR)",
    "table1": "[P] Table 1: 1-bit weights, CIFAR, + and ++ (cutout)",
    "table2": "[P] Table 2: 1-bit weights, ImageNet, WRN 18-2.5",
}
SOURCES = {"W2017": "[W]", "P2018": "[P]"}
#: points of test error within which a reproduction at paper scale agrees with the claim
TOLERANCE = {"cifar10": 0.5, "cifar100": 1.0, "imagenet": 1.0}
VERDICTS = {
    "within": "within tolerance",
    "outside": "outside tolerance",
    "scale": "different data or scale: gap compared",
    "quoted": "quoted from another paper (another network)",
    "memory": "memory accounting",
    "not run": "not run by this grid",
}


def dataset_name(name) -> str:
    """A registered dataset's title; an unregistered name (a plugin's, not loaded here) as it is."""
    from ..data import DATASETS

    return DATASETS.get(name).title if name in DATASETS else name


#: networks that only published rows of other papers name (not models of this suite)
QUOTED_NETWORKS = {"vgg": "VGG", "googlenet": "GoogLeNet", "resnet": "ResNet"}


def network(row) -> str:
    """A row's network by its registered label (e.g. WRN-20-10)."""
    from ..models import LABELS, model_label

    arch = row["arch"]
    if arch not in LABELS:
        return QUOTED_NETWORKS.get(arch, arch)
    kw = {}
    if pd.notna(row.get("depth")) and str(row.get("depth")) != "":
        kw["depth"] = int(float(row["depth"]))
    if pd.notna(row.get("width")) and str(row.get("width")) != "":
        kw["width"] = float(row["width"])
    return model_label(arch, **kw)


def mib(n) -> str:
    """Bytes in binary units: ``55.9 MiB``, ``1.75 GiB``, ``230.0 KiB`` (empty for none)."""
    from ..measure.memory import format_bytes

    return "" if n is None or pd.isna(n) else format_bytes(n)


def pm(mean, std, n=None) -> str:
    """``21.85 ± 0.14``; seeds that ended on the same error say so instead of ``± 0.00``."""
    if mean is None or pd.isna(mean):
        return ""
    if std is None or pd.isna(std):
        return f"{mean:.2f}" + (" (1 seed)" if n == 1 else "")
    if std == 0:
        return f"{mean:.2f} (all {int(n)} seeds equal)" if n else f"{mean:.2f} (seeds equal)"
    return f"{mean:.2f} ± {std:.2f}"


def _num(v, fmt: str) -> str:
    return "" if v is None or pd.isna(v) else fmt.format(v)


def _method_sort(df: pd.DataFrame, col: str = "method", first: tuple = ()) -> pd.DataFrame:
    rank = {m: i for i, m in enumerate(ordered(df[col]))}
    keys = list(first) + ["_rank"]
    return df.assign(_rank=df[col].map(rank)).sort_values(keys, kind="stable").drop(columns="_rank")


# ------------------------------------------------------------------ the headline table

def _paper_scale(r, pub) -> bool:
    same_net = (r["arch"] == pub["arch"] and (pd.isna(pub["depth"]) or float(r["depth"]) == float(pub["depth"]))
                and (pd.isna(pub["width"]) or float(r["width"]) == float(pub["width"])))
    full = pd.isna(r.get("train_subset")) and pd.isna(r.get("test_subset"))
    epochs = pd.isna(pub["epochs"]) or int(r["epochs"]) == int(pub["epochs"])
    return bool(same_net and full and epochs)


def headline(published: pd.DataFrame, summary: pd.DataFrame, gaps: pd.DataFrame, paper_gaps: pd.DataFrame,
             memory: "pd.DataFrame | None" = None) -> pd.DataFrame:
    """One line per published number: the claim, what this grid reproduced for it (the
    grid rows linked to it by paper_source, paper_table and paper_row) and a verdict:

    * within / outside tolerance: a reproduction at paper scale (same dataset, network,
      epochs, all the data), within :data:`TOLERANCE` points of the claim or not;
    * different data or scale: the linked rows ran on other data or at a smaller scale,
      so their gap to the 32-bit row of the same recipe is set beside the paper's gap;
    * quoted: a number the paper cites from another paper, on another network;
    * memory accounting: the memory slide, against the grid's ResNet-18 measurement;
    * not run by this grid.
    """
    g = gaps.set_index("row")["gap"] if len(gaps) else pd.Series(dtype=float)
    pgap = {(r.paper_source, r.paper_row, r.dataset, r.metric): r.gap for r in paper_gaps.itertuples()}
    out = []
    for _, p in published.iterrows():
        metric = p["metric"]
        claim_net = network(p) if pd.notna(p["arch"]) else ""
        line = {"source": f"{SOURCES.get(p['paper_source'], p['paper_source'])} {p['paper_table']}",
                "published row": p["paper_row"], "method": p["method"], "dataset": dataset_name(p["dataset"]),
                "network, epochs": claim_net + (f", {int(p['epochs'])} ep." if pd.notna(p["epochs"]) else ""),
                "metric": {"top1_err": "top-1 %", "top5_err": "top-5 %"}.get(metric, metric)}
        quoted = p["paper_row"].endswith("-published") or p["paper_row"].startswith("reference")
        if metric == "train_act_bytes_bs256":
            line.update(claim=f"{p['value'] / 1e9:g} GB = {mib(p['value'])}", reproduced="",
                        verdict=VERDICTS["not run"])
            r18 = memory[(memory["arch"] == "resnet18") & (memory["quantity"] == "paper accounting")
                         & (memory["kind"] == "total") & (memory["method"] == p["method"])] if memory is not None \
                and len(memory) else pd.DataFrame()
            if len(r18):
                got = r18["bytes_per_image"].iloc[0] * 256
                line["reproduced"] = f"{mib(got)} (the paper's accounting, batch 256)"
                line["verdict"] = f"{VERDICTS['memory']}: {100 * (got / p['value'] - 1):+.0f}% (the slide rounds)"
            out.append(line)
            continue
        line["claim"] = f"{p['value']:.2f}"
        pg = pgap.get((p["paper_source"], p["paper_row"], p["dataset"], metric))
        line["claimed gap"] = _num(pg, "{:+.2f}")
        linked = summary[(summary["paper_source"] == p["paper_source"]) & (summary["paper_table"] == p["paper_table"])
                         & (summary["paper_row"] == p["paper_row"])].dropna(subset=["test_err_mean"])
        same = linked[linked["dataset"] == p["dataset"]]
        col = "test_err_mean" if metric == "top1_err" else "test_top5_mean"
        use = same if len(same) else linked
        if len(use) and (metric == "top1_err" or col in use):
            r = use.iloc[0]
            value, std = r[col], r["test_err_std"] if metric == "top1_err" else None
            n = int(r["seeds"])
            line["reproduced"] = (f"{pm(value, std, n)}, {n} seed{'s' if n > 1 else ''}, "
                                  f"{dataset_name(r['dataset'])}, {network(r)}, {int(r['epochs'])} ep."
                                  + (", subset" if pd.notna(r.get("train_subset")) else ""))
            line["gap here"] = _num(g.get(r["row"]), "{:+.2f}") if metric == "top1_err" else ""
            if quoted:
                line["verdict"] = VERDICTS["quoted"]
            elif len(same) and _paper_scale(r, p):
                diff = value - p["value"]
                tol = TOLERANCE.get(p["dataset"], 1.0)
                verdict = "within" if abs(diff) <= tol else "outside"
                line["verdict"] = f"{VERDICTS[verdict]} ({diff:+.2f}, ±{tol:g})"
            else:
                line["verdict"] = VERDICTS["scale"]
        else:
            line.update(reproduced="", verdict=VERDICTS["quoted"] if quoted else VERDICTS["not run"])
        out.append(line)
    cols = ["source", "published row", "method", "dataset", "network, epochs", "metric", "claim", "claimed gap",
            "reproduced", "gap here", "verdict"]
    head = pd.DataFrame(out, columns=cols).fillna("")
    # what was judged first, then what compares by gaps, then quoted numbers, then the rest
    rank = {VERDICTS[k]: i for i, k in enumerate(["within", "outside", "memory", "scale", "quoted", "not run"])}
    order = head["verdict"].map(lambda v: min((i for k, i in rank.items() if v.startswith(k)), default=9))
    return head.assign(_o=order).sort_values("_o", kind="stable").drop(columns="_o").reset_index(drop=True)


def verdict_counts(head: pd.DataFrame) -> str:
    kinds = head["verdict"].str.replace(r" \(.*", "", regex=True).value_counts()
    return ", ".join(f"{n} {k}" for k, n in kinds.items())


# ------------------------------------------------------------------ the sections

def reproduced_table(summary: pd.DataFrame, table: str) -> pd.DataFrame:
    """This grid's rows of one paper table (its ``table`` column) and the 32-bit rows of
    the same recipes, fp32 first."""
    mine = summary[summary["table"].eq(table)]
    if mine.empty:
        return mine
    base = summary[(summary["method"] == "fp32") & summary["recipe"].isin(mine["recipe"])]
    out = pd.concat([base, mine]).drop_duplicates("row")
    out = out.assign(network=out.apply(network, axis=1), dataset=out["dataset"].map(dataset_name))
    out = _method_sort(out, first=("dataset", "network"))
    return pd.DataFrame({
        "row": out["row"], "dataset": out["dataset"], "network": out["network"], "method": out["method"],
        "epochs": out["epochs"], "test error % (mean ± sd)": [
            pm(m, sd, n) for m, sd, n in zip(out["test_err_mean"], out["test_err_std"], out["seeds"])],
        "seeds": out["seeds"].astype("Int64"),
        "paper %": out["paper_err"].map(lambda v: _num(v, "{:.2f}")),
        "difference": out["diff_vs_paper"].map(lambda v: _num(v, "{:+.2f}")),
    }).reset_index(drop=True)


def published_table(published: pd.DataFrame, table: str) -> pd.DataFrame:
    """The paper's table as published, each row marked as the paper's own result, a
    quoted reference, or a number quoted from another paper."""
    p = published[(published["paper_table"] == table) |
                  ((table in ("slide16", "slide18")) & (published["paper_table"] == "abstract"))]
    p = p[p["metric"].isin(["top1_err", "top5_err"])]
    if p.empty:
        return p

    def kind(r):
        if r.endswith("-published"):
            return "quoted from another paper (other network)"
        if r.startswith("reference"):
            return "quoted reference"
        return "the paper's result"

    p = p.assign(network=p.apply(lambda r: network(r) if pd.notna(r["arch"]) else "", axis=1))
    index = ["paper_source", "paper_row", "method", "network", "epochs"]
    p = p.assign(epochs=p["epochs"].map(lambda v: "" if pd.isna(v) else f"{int(v)}"))
    wide = p.pivot_table(index=index, columns=["dataset", "metric"], values="value", aggfunc="first", sort=False)
    wide.columns = [f"{dataset_name(d)} {m.replace('_err', '')} %" for d, m in wide.columns]
    wide = _method_sort(wide.reset_index().dropna(axis=1, how="all"))
    wide.insert(1, "kind", wide["paper_row"].map(kind))
    wide["paper_source"] = wide["paper_source"].map(lambda v: SOURCES.get(v, v))
    return wide.fillna("").reset_index(drop=True)


def table_text(table: str, summary: pd.DataFrame, gaps: pd.DataFrame, grid: str) -> str:
    """What the grid ran of this table, its gaps, the largest difference from the paper."""
    rows = reproduced_table(summary, table)
    if rows.empty:
        return (f"The grid `{grid}` runs no row of this table; the published numbers are shown "
                "alone. `snakemake --cores all --resources gpu=1 --config grid=paper` runs them on a GPU "
                "machine with the data.")
    text = [f"Rows run by the grid `{grid}`: {len(rows)} on {', '.join(sorted(set(rows['dataset'])))}."]
    if "Fashion-MNIST" in set(rows["dataset"]):
        text.append("They run on **Fashion-MNIST** with small networks: their errors are not the paper's "
                    "CIFAR errors; what compares is the *gap* each method opens against the 32-bit network "
                    "(headline table).")
    mine = gaps[gaps["row"].isin(rows["row"])]
    if len(mine):
        parts = [f"{r.method} on {dataset_name(r.dataset)} {network(r._asdict())}: {r.gap:+.2f}"
                 for r in _method_sort(mine).itertuples()]
        text.append("Gap to the 32-bit row of the same recipe (points of test error): " + "; ".join(parts) + ".")
    diffs = summary[summary["row"].isin(rows["row"])].dropna(subset=["diff_vs_paper"])
    if len(diffs):
        worst = diffs.loc[diffs["diff_vs_paper"].abs().idxmax()]
        text.append(f"Largest difference from the published value: {worst['row']} "
                    f"({worst['diff_vs_paper']:+.2f} points).")
    missing = summary[summary["row"].isin(rows["row"]) & summary["test_err_mean"].isna()]
    if len(missing):
        text.append(f"Rows without a result: {', '.join(missing['row'])}.")
    return " ".join(text)


# ------------------------------------------------------------------ memory

def memory_overview(memory: pd.DataFrame) -> pd.DataFrame:
    """Per method (fp32 first), per measured network: how many times less than fp32
    autograd keeps and the step's peak is, and the step time as a multiple of fp32's."""
    tot = memory[memory["kind"] == "total"]
    if tot.empty:
        return pd.DataFrame()
    rows = []
    for method in ordered(tot["method"]):
        row = {"method": method}
        for meas, g in tot[tot["method"] == method].groupby("measurement", sort=False):
            q = g.set_index("quantity")
            keep = q["ratio_vs_fp32"].get("autograd keeps")
            peak = q["ratio_vs_fp32"].get("step peak")
            step = g["step_ratio_vs_fp32"].iloc[0]
            row[meas] = " / ".join(x for x in (_num(keep, "{:.1f}x"), _num(peak, "{:.1f}x"), _num(step, "{:.2f}"))
                                   if x)
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def memory_detail(memory: pd.DataFrame, measurement: str) -> pd.DataFrame:
    """One measured network: per method (fp32 first), bytes per image of the paper's
    accounting (also at batch 256), of what autograd keeps, of the step peak, their
    ratios to fp32, the step time and the largest batch within the budget."""
    tot = memory[(memory["kind"] == "total") & (memory["measurement"] == measurement)]
    rows = []
    for method in ordered(tot["method"]):
        q = tot[tot["method"] == method].set_index("quantity")
        kinds = memory[(memory["measurement"] == measurement) & (memory["method"] == method)
                       & (memory["quantity"] == "autograd keeps") & (memory["kind"] != "total")]
        kinds = kinds.sort_values("bytes_per_image", ascending=False)
        get = lambda quantity, col: q[col].get(quantity) if quantity in q.index else None  # noqa: E731
        rows.append({
            "method": method, "bits kept / activation": int(q["activation_bits"].iloc[0]),
            "paper, batch 256": mib(get("paper accounting", "bytes_per_image") * 256),
            "autograd keeps / image": mib(get("autograd keeps", "bytes_per_image")),
            "x less": _num(get("autograd keeps", "ratio_vs_fp32"), "{:.1f}"),
            "step peak / image": mib(get("step peak", "bytes_per_image")),
            "peak x less": _num(get("step peak", "ratio_vs_fp32"), "{:.1f}"),
            "step time x fp32": _num(q["step_ratio_vs_fp32"].iloc[0], "{:.2f}"),
            "largest batch": _num(q["largest_batch"].iloc[0], "{:.0f}"),
            "largest parts kept": ", ".join(f"{k} {mib(b)}" for k, b in
                                            zip(kinds["kind"][:3], kinds["bytes_per_image"][:3]) if b > 0),
        })
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ same network, same budget

def _layers_kept(method) -> str:
    from ..methods import get_method

    try:
        m = get_method(method)
    except KeyError:
        return ""  # a plugin not loaded here
    if m.weight_bits == 32:
        return ""
    return "32-bit first and last" if m.fp32_first_last else "all 1-bit"


def same_budget(summary: pd.DataFrame, memory: pd.DataFrame) -> pd.DataFrame:
    """"Same network, same budget": per method, on the recipe the grid trains the most
    methods on (same network, data, schedule and seeds): test error, bits per weight,
    which layers are 1-bit (each peer as its paper defines it), bits kept per activation
    for backward, and, from the memory measurement the grid names for that network (its
    ``memory`` column), what autograd keeps and the step peak as x less than fp32, and
    the step time as x fp32."""
    if summary.empty:
        return pd.DataFrame()
    counts = summary.groupby("recipe")["method"].nunique()
    rows = _method_sort(summary[summary["recipe"] == counts.idxmax()])
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
            "method": r.method, "network": f"{network(r._asdict())}, {dataset_name(r.dataset)}",
            "test error %": pm(r.test_err_mean, r.test_err_std, r.seeds),
            "bits / weight": _num(kept.get("weight_bits"), "{:.0f}"), "1-bit layers": _layers_kept(r.method),
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


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Every row of the grid, compactly (the full table is results/<grid>/summary.csv)."""
    s = _method_sort(summary.assign(network=summary.apply(network, axis=1)), first=("table", "dataset", "network"))
    return pd.DataFrame({
        "row": s["row"], "table": s["table"], "dataset": s["dataset"].map(dataset_name), "network": s["network"],
        "method": s["method"], "epochs": s["epochs"],
        "test error %": [pm(m, sd, n) for m, sd, n in zip(s["test_err_mean"], s["test_err_std"], s["seeds"])],
        "paper %": s["paper_err"].map(lambda v: _num(v, "{:.2f}")),
        "minutes / run": (s["wall_seconds"] / 60).map(lambda v: _num(v, "{:.1f}")),
    }).reset_index(drop=True)


#: grid tables the report shows in sections of their own (besides :data:`TABLES`)
SHOWN_ELSEWHERE = ("baseline", "peers", "ablation", "memory")


def other_tables(summary: pd.DataFrame) -> dict:
    """The rows of tables no paper section shows (a grid's own, such as ``recipe``), per
    table: each row's error and what it changes against the first row of its method in
    that table (the fields of its recipe that differ, and the difference in error)."""
    import json

    extra = summary[~summary["table"].isin(list(TABLES) + list(SHOWN_ELSEWHERE))]
    out = {}
    for table, rows in extra.groupby("table", sort=False):
        first, changes, diffs = {}, [], []
        for _, r in rows.iterrows():
            ref = first.setdefault(r["method"], r)
            mine, theirs = json.loads(r["recipe"]), json.loads(ref["recipe"])
            changed = [f"{k} = {mine.get(k)}" for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
            same = r["row"] == ref["row"]
            changes.append("(the reference of its method)" if same else ", ".join(changed) or "nothing")
            diffs.append("" if same else f"{r['test_err_mean'] - ref['test_err_mean']:+.2f}")
        out[table] = pd.DataFrame({
            "row": rows["row"].values, "method": rows["method"].values,
            "network": rows.apply(network, axis=1).values, "dataset": rows["dataset"].map(dataset_name).values,
            "test error % (mean ± sd)": [pm(m, sd, n) for m, sd, n in
                                         zip(rows["test_err_mean"], rows["test_err_std"], rows["seeds"])],
            "seeds": rows["seeds"].astype("Int64").values,
            "changed against the first row of its method": changes, "error difference": diffs})
    return out
