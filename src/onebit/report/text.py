"""Tables and text of the report, from the tidy tables (used by the report notebook).

Every sentence about results is computed from the data it describes; nothing here
holds a result. Tables list ``fp32`` first and the methods in one order
(:func:`onebit.methods.ordered`: by family); bytes are binary units (KiB, MiB, GiB) throughout.
"""

from __future__ import annotations

import pandas as pd

from ..methods import ordered
from ..units import format_bytes, format_number, mean_interval_text, mean_sd
from .claims import VERDICT_ORDER, Claims, table_changes

#: how the report words each verdict key of :func:`onebit.report.claims.verdicts`
VERDICTS = {
    "within": "within tolerance",
    "outside": "outside tolerance",
    "scale": "different data or scale: gap compared",
    "quoted": "quoted from another paper (another network)",
    "memory": "memory accounting",
    "not run": "not run by this grid",
}


def esc(value) -> str:
    """A value from the tables, safe inside Markdown or HTML text: grid cells and run
    metadata are user text, and Markdown passes a well-formed HTML tag through."""
    import html

    return html.escape(str(value))


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


def _method_sort(df: pd.DataFrame, col: str = "method", first: tuple = ()) -> pd.DataFrame:
    rank = {m: i for i, m in enumerate(ordered(df[col]))}
    keys = list(first) + ["_rank"]
    return df.assign(_rank=df[col].map(rank)).sort_values(keys, kind="stable").drop(columns="_rank")


# ------------------------------------------------------------------ the headline table


def _claim_network(arch, depth, width, epochs) -> str:
    net = network({"arch": arch, "depth": depth, "width": width}) if pd.notna(arch) else ""
    return net + (f", {int(epochs)} ep." if pd.notna(epochs) else "")


def _verdict_text(v) -> str:
    if v.verdict in ("within", "outside"):
        return f"{VERDICTS[v.verdict]} ({v.difference:+.2f}, ±{v.tolerance:g})"
    if v.verdict == "memory":
        return f"{VERDICTS['memory']}: {100 * v.difference:+.0f}% (the slide rounds)"
    if v.verdict == "scale" and isinstance(v.agreement, str):
        return f"{VERDICTS['scale']} ({GAP_WORDS[v.agreement]})"
    return VERDICTS[v.verdict]


def _reproduced_text(v) -> str:
    if v.verdict == "memory":
        return f"{format_bytes(v.reproduced, missing='')} (the paper's accounting, batch 256)"
    if pd.isna(v.row):
        return ""
    n = int(v.seeds)
    net = network({"arch": v.run_arch, "depth": v.run_depth, "width": v.run_width})
    return (
        f"{mean_sd(v.reproduced, v.reproduced_sd, n)}, {n} seed{'s' if n > 1 else ''}, "
        f"{dataset_name(v.run_dataset)}, {net}, {int(v.run_epochs)} ep." + (", subset" if v.subset else "")
    )


def headline(verdicts: pd.DataFrame, claims: Claims) -> pd.DataFrame:
    """The headline table: :func:`onebit.report.claims.verdicts` in words, one line per
    published number, in its order."""
    out = []
    for v in verdicts.itertuples():
        memory = v.metric == "train_act_bytes_bs256"
        out.append(
            {
                "source": f"{claims.sources[v.paper_source]} {v.paper_table}",
                "published row": v.paper_row,
                "method": v.method,
                "dataset": dataset_name(v.dataset),
                "network, epochs": _claim_network(v.arch, v.depth, v.width, v.epochs),
                "metric": {"top1_err": "top-1 %", "top5_err": "top-5 %"}.get(v.metric, v.metric),
                "claim": f"{v.claim / 1e9:g} GB = {format_bytes(v.claim, missing='')}" if memory else f"{v.claim:.2f}",
                "claimed gap": format_number(v.claimed_gap, "{:+.2f}"),
                "reproduced": _reproduced_text(v),
                "gap here": format_number(v.gap, "{:+.2f}"),
                "verdict": _verdict_text(v),
            }
        )
    cols = [
        "source",
        "published row",
        "method",
        "dataset",
        "network, epochs",
        "metric",
        "claim",
        "claimed gap",
        "reproduced",
        "gap here",
        "verdict",
    ]
    return pd.DataFrame(out, columns=cols)


#: how the report words the agreement of a gap (verdict ``scale``) with the paper's
GAP_WORDS = {
    "agrees": "the paper's gap lies in the 95 % interval of the gap here",
    "larger": "gap larger than the paper's: its whole 95 % interval lies above",
    "smaller": "gap smaller than the paper's: its whole 95 % interval lies below",
    "one seed": "one seed: no interval to compare with",
    "no gap": "no gap to compare (no 32-bit row of the same recipe, or no published gap)",
    "baseline": "the 32-bit baseline the gaps are taken against, judged through them",
}

#: the colour class of each outcome on the first screen: held, not held, differs, undecided
STATUS = {
    "within": "held",
    "agrees": "held",
    "holds": "held",
    "outside": "failed",
    "larger": "failed",
    "does not hold": "failed",
    "smaller": "differs",
    "one seed": "undecided",
    "no gap": "undecided",
    "accounting": "undecided",
}

#: the verdicts of claims this grid tested (the first screen); the others fold away
TESTED = ("within", "outside", "memory", "scale")


def outcome(v) -> str:
    """A tested claim's outcome key: the verdict for ``within`` / ``outside``, the
    agreement for ``scale`` and ``memory``."""
    return v.verdict if v.verdict in ("within", "outside") else v.agreement


def tested_claims(verdicts: pd.DataFrame) -> pd.Series:
    """Which lines of :func:`onebit.report.claims.verdicts` are claims this grid tested:
    at the paper's scale, by their gap, or the memory claim; a 32-bit baseline at another
    scale is not a claim of its own (the gaps are taken against it)."""
    return verdicts["verdict"].isin(TESTED) & ~verdicts["agreement"].eq("baseline")


def tally(verdicts: pd.DataFrame) -> dict:
    """Counts for the first screen: claims tested (within, outside, at a different scale
    and how their gaps compare, the memory claim judged), and published numbers not
    tested (quoted, not run)."""
    tested = verdicts[tested_claims(verdicts)]
    scale = tested[tested["verdict"] == "scale"]
    judged = tested[(tested["verdict"] == "memory") & tested["agreement"].isin(["holds", "does not hold"])]
    return {
        "tested": int(len(tested[tested["verdict"] != "memory"]) + len(judged)),
        "within": int((tested["verdict"] == "within").sum()),
        "outside": int((tested["verdict"] == "outside").sum()),
        "scale": int(len(scale)),
        **{f"scale {k}": int((scale["agreement"] == k).sum()) for k in GAP_WORDS},
        "memory holds": int((judged["agreement"] == "holds").sum()),
        "memory does not hold": int((judged["agreement"] == "does not hold").sum()),
        "quoted": int((verdicts["verdict"] == "quoted").sum()),
        "not run": int((verdicts["verdict"] == "not run").sum()),
        "baseline": int(verdicts["agreement"].eq("baseline").sum()),
    }


def tally_text(t: dict) -> str:
    """The tally in words, as HTML (``<b>`` for the counts; no user text in it)."""
    if not t["tested"]:
        return (
            "<b>No claim of the papers is tested by this grid</b>: no row of it is linked to a published "
            f"number (grid columns paper_source, paper_table, paper_row). {t['quoted'] + t['not run']} published "
            "numbers are listed below."
        )
    parts = [f"<b>{t['within']} within tolerance</b>", f"<b>{t['outside']} outside tolerance</b>"]
    gaps = [f"{t['scale ' + k]} {w}" for k, w in (("agrees", "agree"), ("larger", "larger"), ("smaller", "smaller"))]
    undecided = t["scale one seed"] + t["scale no gap"]
    if undecided:
        gaps.append(f"{undecided} undecided")
    parts.append(f"<b>{t['scale']} at a different data or scale</b> (gaps against the paper's: {', '.join(gaps)})")
    if t["memory holds"] or t["memory does not hold"]:
        parts.append("<b>memory claim (slide 14): " + ("holds" if t["memory holds"] else "does not hold") + "</b>")
    return (
        f"<b>{t['tested']} claim{'s' if t['tested'] != 1 else ''} tested by this grid:</b> "
        + " · ".join(parts)
        + f". Not tested: {t['quoted']} "
        f"quoted from other papers, {t['not run']} not run by this grid"
        + (f", {t['baseline']} 32-bit baselines at another scale" if t["baseline"] else "")
        + " (listed further down)."
    )


def _ratio(x) -> str:
    return format_number(x, "{:.1f}x")


def claims_table(verdicts: pd.DataFrame, claims: Claims) -> pd.DataFrame:
    """The first screen's table: one line per claim this grid tested, with its outcome key
    (``status``: held, failed, differs, undecided; the report colours lines by it)."""
    out = []
    for v in verdicts[tested_claims(verdicts)].itertuples():
        if v.verdict == "memory" and v.agreement == "accounting" and v.method == "fp32":
            continue  # the 32-bit accounting: the judged line is the 1-bit one, which shows it too
        key = outcome(v)
        what = f"{claims.sources[v.paper_source]} {v.paper_table} {v.paper_row}: {v.method}"
        if v.verdict == "memory":
            out.append(
                {
                    "claim": f"{what}, training memory falls {_ratio(v.claimed_ratio)} (ResNet-18, batch 256)",
                    "published": f"{v.claim / 1e9:g} GB = {format_bytes(v.claim, missing='')}; "
                    f"{_ratio(v.claimed_ratio)} less than 32-bit",
                    "reproduced": f"accounting {format_bytes(v.reproduced, missing='')} ({100 * v.difference:+.0f}%); "
                    f"measured ({v.measurement}): autograd keeps {_ratio(v.kept_ratio)} less, "
                    f"step peak {_ratio(v.peak_ratio)} less",
                    "verdict": _memory_verdict(v),
                    "status": STATUS[key],
                }
            )
            continue
        net = _claim_network(v.arch, v.depth, v.width, v.epochs)
        claim = f"{what}, {dataset_name(v.dataset)}, {net}"
        if v.verdict == "scale":
            published = (
                f"gap {v.claimed_gap:+.2f} (error {v.claim:.2f})"
                if pd.notna(v.claimed_gap)
                else f"error {v.claim:.2f} (no 32-bit row of it published: no gap)"
            )
            reproduced = (
                f"gap {mean_interval_text(v.gap, v.gap_low, v.gap_high, '{:+.2f}', v.pairs)}"
                f" on {dataset_name(v.run_dataset)} "
                f"{network({'arch': v.run_arch, 'depth': v.run_depth, 'width': v.run_width})}, "
                f"{int(v.run_epochs)} ep.{', subset' if v.subset else ''}, {_seeds(v.pairs)}"
                if pd.notna(v.gap)
                else f"error {v.reproduced:.2f}, no 32-bit row of the same recipe"
            )
            verdict = GAP_WORDS[v.agreement]
        else:
            published = f"{v.claim:.2f} %"
            reproduced = (
                f"{mean_interval_text(v.reproduced, v.reproduced_low, v.reproduced_high, n=v.seeds)} %, "
                f"{_seeds(v.seeds)}"
            )
            verdict = f"{VERDICTS[v.verdict]} ({v.difference:+.2f}, ±{v.tolerance:g})"
        out.append(
            {
                "claim": claim,
                "published": published,
                "reproduced": reproduced,
                "verdict": verdict,
                "status": STATUS[key],
            }
        )
    return pd.DataFrame(out, columns=["claim", "published", "reproduced", "verdict", "status"])


def _seeds(n) -> str:
    n = int(n) if pd.notna(n) else 0
    return f"{n} seed{'s' if n != 1 else ''}"


def _memory_verdict(v) -> str:
    if v.agreement != "holds" and v.agreement != "does not hold":
        return "the paper's accounting only (no 32-bit measurement to compare)"
    verdict = (
        f"holds: autograd keeps {_ratio(v.kept_ratio)} less (the slide: {_ratio(v.claimed_ratio)})"
        if v.agreement == "holds"
        else f"does not hold: autograd keeps {_ratio(v.kept_ratio)} less, not {_ratio(v.claimed_ratio)}"
    )
    if v.agreement == "does not hold" and pd.notna(v.float_share):
        verdict += (
            f"; {100 * v.float_share:.0f}% of what it keeps is float activations (batch norm's input, "
            "which the slide's accounting leaves out)"
        )
    return verdict


def verdict_counts(verdicts: pd.DataFrame) -> str:
    """``2 within tolerance, 14 quoted from ...``: the number of published numbers per verdict."""
    kinds = verdicts["verdict"].value_counts()
    return ", ".join(f"{kinds[k]} {VERDICTS[k]}" for k in VERDICT_ORDER if k in kinds.index)


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
    return pd.DataFrame(
        {
            "row": out["row"],
            "dataset": out["dataset"],
            "network": out["network"],
            "method": out["method"],
            "epochs": out["epochs"],
            "test error % (mean ± sd)": [
                mean_sd(m, sd, n) for m, sd, n in zip(out["test_err_mean"], out["test_err_std"], out["seeds"])
            ],
            "seeds": out["seeds"].astype("Int64"),
            "paper %": out["paper_err"].map(lambda v: format_number(v, "{:.2f}")),
            "difference": out["diff_vs_paper"].map(lambda v: format_number(v, "{:+.2f}")),
        }
    ).reset_index(drop=True)


def published_table(published: pd.DataFrame, table: str, claims: Claims) -> pd.DataFrame:
    """The paper's table as published, each row marked as the paper's own result, a
    quoted reference, or a number quoted from another paper."""
    p = published[
        (published["paper_table"] == table)
        | ((table in ("slide16", "slide18")) & (published["paper_table"] == "abstract"))
    ]
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
    wide["paper_source"] = wide["paper_source"].map(claims.sources)
    return wide.fillna("").reset_index(drop=True)


def table_text(table: str, summary: pd.DataFrame, gaps: pd.DataFrame, grid: str) -> str:
    """What the grid ran of this table, its gaps, the largest difference from the paper."""
    rows = reproduced_table(summary, table)
    if rows.empty:
        return (
            f"The grid `{esc(grid)}` runs no row of this table; the published numbers are shown "
            "alone. `snakemake --cores all --resources gpu=1 --config grid=paper` runs them on a GPU "
            "machine with the data."
        )
    text = [f"Rows run by the grid `{esc(grid)}`: {len(rows)} on {esc(', '.join(sorted(set(rows['dataset']))))}."]
    if "Fashion-MNIST" in set(rows["dataset"]):
        text.append(
            "They run on **Fashion-MNIST** with small networks: their errors are not the paper's "
            "CIFAR errors; what compares is the *gap* each method opens against the 32-bit network "
            "(section 1, and the gaps with their intervals above)."
        )
    mine = gaps[gaps["row"].isin(rows["row"])]
    if len(mine):
        parts = [
            f"{esc(r.method)} on {esc(dataset_name(r.dataset))} {esc(network(r._asdict()))}: {r.gap:+.2f}"
            for r in _method_sort(mine).itertuples()
        ]
        text.append("Gap to the 32-bit row of the same recipe (points of test error): " + "; ".join(parts) + ".")
    diffs = summary[summary["row"].isin(rows["row"])].dropna(subset=["diff_vs_paper"])
    if len(diffs):
        worst = diffs.loc[diffs["diff_vs_paper"].abs().idxmax()]
        text.append(
            f"Largest difference from the published value: {esc(worst['row'])} ({worst['diff_vs_paper']:+.2f} points)."
        )
    missing = summary[summary["row"].isin(rows["row"]) & summary["test_err_mean"].isna()]
    if len(missing):
        text.append(f"Rows without a result: {esc(', '.join(missing['row']))}.")
    return " ".join(text)


# ------------------------------------------------------------------ memory


def memory_overview(memory: pd.DataFrame) -> pd.DataFrame:
    """Per method (fp32 first), per measured network, three columns: how many times less
    than fp32 autograd keeps, how many times less the step's peak is, and the step time as
    a multiple of fp32's."""
    tot = memory[memory["kind"] == "total"]
    if tot.empty:
        return pd.DataFrame()
    rows = []
    for method in ordered(tot["method"]):
        row = {"method": method}
        for meas, g in tot[tot["method"] == method].groupby("measurement", sort=False):
            q = g.set_index("quantity")
            row[f"{meas}: kept x less"] = format_number(q["ratio_vs_fp32"].get("autograd keeps"), "{:.1f}")
            row[f"{meas}: peak x less"] = format_number(q["ratio_vs_fp32"].get("step peak"), "{:.1f}")
            row[f"{meas}: step time x fp32"] = format_number(g["step_ratio_vs_fp32"].iloc[0], "{:.2f}")
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
        kinds = memory[
            (memory["measurement"] == measurement)
            & (memory["method"] == method)
            & (memory["quantity"] == "autograd keeps")
            & (memory["kind"] != "total")
        ]
        kinds = kinds.sort_values("bytes_per_image", ascending=False)
        get = lambda quantity, col: q[col].get(quantity) if quantity in q.index else None  # noqa: E731
        rows.append(
            {
                "method": method,
                "bits kept / activation": int(q["activation_bits"].iloc[0]),
                "paper, batch 256": format_bytes(get("paper accounting", "bytes_per_image") * 256, missing=""),
                "autograd keeps / image": format_bytes(get("autograd keeps", "bytes_per_image"), missing=""),
                "x less": format_number(get("autograd keeps", "ratio_vs_fp32"), "{:.1f}"),
                "step peak / image": format_bytes(get("step peak", "bytes_per_image"), missing=""),
                "peak x less": format_number(get("step peak", "ratio_vs_fp32"), "{:.1f}"),
                "step time x fp32": format_number(q["step_ratio_vs_fp32"].iloc[0], "{:.2f}"),
                "largest batch": format_number(q["largest_batch"].iloc[0], "{:.0f}"),
                "largest parts kept": ", ".join(
                    f"{k} {format_bytes(b, missing='')}"
                    for k, b in zip(kinds["kind"][:3], kinds["bytes_per_image"][:3])
                    if b > 0
                ),
            }
        )
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
    """ "Same network, same budget": per method, on the recipe the grid trains the most
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
        out.append(
            {
                "method": r.method,
                "network": f"{network(r._asdict())}, {dataset_name(r.dataset)}",
                "test error %": mean_sd(r.test_err_mean, r.test_err_std, r.seeds),
                "bits / weight": format_number(kept.get("weight_bits"), "{:.0f}"),
                "1-bit layers": _layers_kept(r.method),
                "bits kept / activation": format_number(kept.get("activation_bits"), "{:.0f}"),
                f"kept x less ({measurement})": format_number(kept.get("ratio_vs_fp32"), "{:.1f}"),
                "step peak x less": format_number(peak.get("ratio_vs_fp32"), "{:.1f}"),
                "step time x fp32": format_number(kept.get("step_ratio_vs_fp32"), "{:.2f}"),
                "description": kept.get("description", ""),
            }
        )
    return pd.DataFrame(out)


def fidelity_summary(fidelity: pd.DataFrame) -> pd.DataFrame:
    """Per method: median over layers of the weight-gradient bias, spread and error
    (relative to the exact gradient's norm), and whether the bias stands above the
    noise floor of the finite number of draws."""
    if fidelity.empty:
        return pd.DataFrame()
    df = fidelity[fidelity["exact_norm"] > 0]
    g = df.groupby("method", sort=False)
    out = pd.DataFrame(
        {
            "bias (median over layers)": g["bias"].median(),
            "spread of one draw": g["std"].median(),
            "error of one draw": g["rmse"].median(),
            "noise floor": g["noise_floor"].median(),
        }
    )
    out["bias beyond noise"] = (
        g.apply(lambda d: (d["bias"] > 3 * d["noise_floor"] + 1e-12).mean(), include_groups=False) * 100
    ).map("{:.0f}% of layers".format)
    out = out.sort_values("error of one draw")
    for c in out.columns[:4]:
        out[c] = out[c].map("{:.3f}".format)
    return out.reset_index()


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Every row of the grid, compactly (the full table is results/<grid>/summary.csv)."""
    s = _method_sort(summary.assign(network=summary.apply(network, axis=1)), first=("table", "dataset", "network"))
    return pd.DataFrame(
        {
            "row": s["row"],
            "table": s["table"],
            "dataset": s["dataset"].map(dataset_name),
            "network": s["network"],
            "method": s["method"],
            "epochs": s["epochs"],
            "test error %": [mean_sd(m, sd, n) for m, sd, n in zip(s["test_err_mean"], s["test_err_std"], s["seeds"])],
            "paper %": s["paper_err"].map(lambda v: format_number(v, "{:.2f}")),
            "minutes / run": (s["wall_seconds"] / 60).map(lambda v: format_number(v, "{:.1f}")),
        }
    ).reset_index(drop=True)


#: grid tables the report shows in sections of their own (besides the paper tables of claims.yaml)
SHOWN_ELSEWHERE = ("baseline", "peers", "ablation", "memory")


def other_tables(summary: pd.DataFrame, claims: Claims) -> dict:
    """The rows of tables no paper section shows (a grid's own, such as ``recipe``), per
    table: :func:`onebit.report.claims.table_changes` in words, with each row's error."""
    changes = table_changes(summary, list(claims.tables) + list(SHOWN_ELSEWHERE))
    out = {}
    for table, ch in changes.groupby("table", sort=False):
        rows = summary.set_index("row").loc[ch["row"]].reset_index()
        out[table] = pd.DataFrame(
            {
                "row": rows["row"].values,
                "method": rows["method"].values,
                "network": rows.apply(network, axis=1).values,
                "dataset": rows["dataset"].map(dataset_name).values,
                "test error % (mean ± sd)": [
                    mean_sd(m, sd, n) for m, sd, n in zip(rows["test_err_mean"], rows["test_err_std"], rows["seeds"])
                ],
                "seeds": rows["seeds"].astype("Int64").values,
                "changed against the first row of its method": [
                    "(the reference of its method)" if r == ref else ", ".join(f"{k} = {v}" for k, v in c) or "nothing"
                    for r, ref, c in zip(ch["row"], ch["reference"], ch["changed"])
                ],
                "error difference": ch["difference"].map(lambda v: format_number(v, "{:+.2f}")).values,
            }
        )
    return out


# ------------------------------------------------------------------ HTML


#: the first screen's colours per status of :func:`claims_table`
STATUS_COLORS = {"held": "#d4edda", "failed": "#f8d7da", "differs": "#fff3cd", "undecided": "#e9ecef"}


def html_table(df: pd.DataFrame, status: "str | None" = None) -> str:
    """``df`` as an HTML table, every cell escaped (grid cells are user text); with
    ``status``, that column gives each line its colour (:data:`STATUS_COLORS`) and is not shown."""
    import html

    cols = [c for c in df.columns if c != status]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = []
    for _, r in df.iterrows():
        style = f' style="background:{STATUS_COLORS.get(r[status], "")}"' if status else ""
        cells = "".join(f"<td>{html.escape('' if _blank(r[c]) else str(r[c]))}</td>" for c in cols)
        body.append(f"<tr{style}>{cells}</tr>")
    return f'<table class="dataframe"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _blank(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def heading(level: int, anchor: str, title: str) -> str:
    """An HTML heading with a stable anchor for the table of contents (title escaped)."""
    import html

    return f'<h{level} id="{html.escape(anchor)}">{html.escape(title)}</h{level}>'


def gaps_table(gaps: pd.DataFrame) -> pd.DataFrame:
    """The paired gaps with their intervals, fp32 rows' order, in words: a gap whose 95 %
    interval holds 0 is not told apart from 32-bit by these seeds."""
    if gaps.empty:
        return pd.DataFrame()
    g = _method_sort(gaps)
    return pd.DataFrame(
        {
            "method": g["method"],
            "network": [f"{network(r)}, {dataset_name(r['dataset'])}" for _, r in g.iterrows()],
            "vs 32-bit row": g["fp32_row"],
            "gap, points [95 % interval]": [
                mean_interval_text(m, lo, hi, "{:+.2f}", n)
                for m, lo, hi, n in zip(g["gap"], g.get("gap_low"), g.get("gap_high"), g.get("pairs"))
            ],
            "seed pairs": g["pairs"].astype("Int64") if "pairs" in g else None,
            "reading": [_gap_reading(lo, hi) for lo, hi in zip(g.get("gap_low"), g.get("gap_high"))],
        }
    ).reset_index(drop=True)


def _gap_reading(low, high) -> str:
    if _blank(low) or _blank(high):
        return "one seed pair: no interval"
    if low > 0:
        return "worse than 32-bit"
    if high < 0:
        return "better than 32-bit"
    return "not told apart from 32-bit by these seeds"


# ------------------------------------------------------------------ provenance and notes


def provenance_text(grid: str, res, summary: pd.DataFrame, metrics: pd.DataFrame) -> str:
    """The line under the title: grid, folder, rows and runs, code revisions, devices,
    and the epoch time summed over runs (not the pipeline's wall time)."""
    runs = len(metrics[["row", "seed"]].drop_duplicates()) if len(metrics) else 0

    def values(col):
        vals = sorted({v for s in summary.get(col, pd.Series(dtype=str)).dropna() for v in str(s).split(", ") if v})
        return esc(", ".join(vals)) or "not recorded"

    revs = values("git_revision")
    revs = ", ".join(r[:10] for r in revs.split(", ")) if revs != "not recorded" else revs
    epoch_min = metrics["epoch_seconds"].sum() / 60 if "epoch_seconds" in metrics else float("nan")
    return (
        f"**Grid:** `{esc(grid)}` ({summary['row'].nunique()} rows, {runs} runs; tables: `{esc(res)}`). "
        f"**Code:** {revs}. **Devices:** {values('device')} ({values('device_name')}); "
        f"torch {values('torch_version')}. "
        f"**Training epochs:** {epoch_min:.1f} device-minutes summed over the runs (runs share the machine and "
        "overlap; the pipeline's wall time also holds data preparation, evaluation and the measurements)."
    )


def other_data(summary: pd.DataFrame, published: pd.DataFrame) -> list:
    """The titles of the datasets this grid trains on that no published number uses."""
    mine = set(summary["dataset"].dropna()) - set(published["dataset"].dropna())
    return sorted(esc(dataset_name(d)) for d in mine)


def memory_text(memory: pd.DataFrame) -> str:
    """Why what autograd keeps falls less than the accounting says, measured: per method
    below 32 bits of kept activations, the ratio and the float share."""
    kept = memory[(memory["quantity"] == "autograd keeps")]
    tot = kept[kept["kind"] == "total"]
    lines = []
    for method in [m for m in ordered(tot["method"]) if m in ("cl", "cl-strict", "w1+cl")]:
        parts = []
        for r in tot[tot["method"] == method].itertuples():
            floats = kept[
                (kept["measurement"] == r.measurement)
                & (kept["method"] == method)
                & (kept["kind"] == "float activations")
            ]["bytes_per_image"].sum()
            share = floats / r.bytes_per_image if r.bytes_per_image else float("nan")
            parts.append(
                f"{esc(r.measurement)}: {r.ratio_vs_fp32:.1f}x less, {100 * share:.0f}% of what it keeps is float"
            )
        lines.append(f"`{esc(method)}`: " + "; ".join(parts))
    devices = esc(", ".join(sorted(set(memory["device"].dropna().astype(str))))) if "device" in memory else ""
    return (
        "**x less than fp32** per measured network: what autograd keeps, the step's peak, and the step time as a "
        f"multiple of fp32's (device: {devices or 'not recorded'}). Under compressed learning the weight layers "
        "keep 1 bit per input, but batch norm keeps its float input, so what autograd keeps falls far less than "
        "the accounting: "
        + " · ".join(lines)
        + ". `cl-strict` keeps only the 1-bit copy per BN-ReLU-conv unit (an inexact BN and ReLU backward). The step's "
        "peak falls less again: gradients and one layer's float temporaries remain."
        if lines
        else "**x less than fp32** per measured network: what autograd keeps, the step's peak, and the step time as a "
        f"multiple of fp32's (device: {devices or 'not recorded'})."
    )


def provenance_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per row: the devices, torch versions and code revisions its runs recorded."""
    cols = {
        "device_name": "device",
        "device": "kind",
        "torch_version": "torch",
        "git_revision": "commit",
        "git_dirty": "uncommitted changes",
        "hostname": "host",
    }
    out = summary[["row"] + [c for c in cols if c in summary]].rename(columns=cols)
    if "commit" in out:
        out["commit"] = out["commit"].map(
            lambda v: ", ".join(x[:10] for x in str(v).split(", ")) if isinstance(v, str) else v
        )
    return out.reset_index(drop=True)
