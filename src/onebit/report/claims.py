"""The claims of the papers and what a grid reproduced for them, as tidy tables.

Data only: :func:`verdicts` gives one line per published number with numbers, not text,
and a verdict key; :mod:`onebit.report.text` formats it. The names of the sources, the
titles of the paper tables and the tolerances are read from ``claims.yaml`` beside the
published numbers (``config/claims.yaml``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import ConfigError

#: verdict keys, in the order the report lists them
VERDICT_ORDER = ("within", "outside", "memory", "scale", "quoted", "not run")
#: the metric of the memory claim (slide 14): bytes of activations kept for backward at batch 256
MEMORY_METRIC = "train_act_bytes_bs256"


@dataclass(frozen=True)
class Claims:
    """What ``claims.yaml`` says: source -> short name, table -> title (in report order),
    dataset -> tolerance in points of test error, and the memory claim's tolerance: the
    measured ratio may fall short of the slide's by this fraction."""

    sources: dict
    tables: dict
    tolerance: dict
    memory_tolerance: float = 0.1


def claims_path(published_path) -> Path:
    return Path(published_path).with_name("claims.yaml")


def load_claims(published_path, published: "pd.DataFrame | None" = None) -> Claims:
    """``claims.yaml`` beside ``published_path``, checked against the published numbers:
    every source, table and dataset they name must be there (nothing falls back)."""
    import yaml

    path = claims_path(published_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: missing. The report reads the sources' names, the tables' titles and the "
            f"tolerances from claims.yaml beside {published_path}; copy config/claims.yaml "
            "there and edit it."
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e}). Fix the file (see config/claims.yaml).") from None
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), dict) for k in ("sources", "tables", "tolerance")):
        raise ConfigError(f"{path}: needs three mappings, sources, tables and tolerance (see config/claims.yaml).")
    bad = {
        k: v
        for k, v in raw["tolerance"].items()
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0
    }
    if bad:
        raise ConfigError(f"{path}: tolerance {bad} is not a number of points >= 0.")
    mem = raw.get("memory_tolerance")
    if isinstance(mem, bool) or not isinstance(mem, (int, float)) or not 0 <= mem < 1:
        raise ConfigError(
            f"{path}: memory_tolerance is {mem!r}; it must be a fraction from 0 up to 1 (0.1: the measured "
            "memory ratio may fall 10 % short of the slide's). Add it as config/claims.yaml does."
        )
    claims = Claims(
        sources={str(k): str(v) for k, v in raw["sources"].items()},
        tables={str(k): str(v) for k, v in raw["tables"].items()},
        tolerance={str(k): float(v) for k, v in raw["tolerance"].items()},
        memory_tolerance=float(mem),
    )
    if published is not None:
        errors = [
            f"{what} {sorted(missing)}"
            for what, missing in (
                ("sources", set(published["paper_source"]) - set(claims.sources)),
                (
                    "tolerances for the datasets",
                    set(published.loc[published["metric"] != MEMORY_METRIC, "dataset"]) - set(claims.tolerance),
                ),
            )
            if missing
        ]
        if errors:
            raise ConfigError(
                f"{path}: {published_path} names {' and '.join(errors)} that {path.name} lacks. Add them to {path}."
            )
    return claims


def _paper_scale(r, pub) -> bool:
    same_net = (
        r["arch"] == pub["arch"]
        and (pd.isna(pub["depth"]) or float(r["depth"]) == float(pub["depth"]))
        and (pd.isna(pub["width"]) or float(r["width"]) == float(pub["width"]))
    )
    full = pd.isna(r.get("train_subset")) and pd.isna(r.get("test_subset"))
    epochs = pd.isna(pub["epochs"]) or int(r["epochs"]) == int(pub["epochs"])
    return bool(same_net and full and epochs)


def is_quoted(paper_row: str) -> bool:
    """A number the paper cites from other work (``*-published``) or as a reference."""
    return paper_row.endswith("-published") or paper_row.startswith("reference")


#: the columns of :func:`verdicts`
VERDICT_COLUMNS = [
    "paper_source",
    "paper_table",
    "paper_row",
    "method",
    "dataset",
    "arch",
    "depth",
    "width",
    "epochs",
    "metric",
    "claim",
    "claimed_gap",
    "row",
    "run_dataset",
    "run_arch",
    "run_depth",
    "run_width",
    "run_epochs",
    "subset",
    "seeds",
    "reproduced",
    "reproduced_sd",
    "reproduced_low",
    "reproduced_high",
    "gap",
    "gap_low",
    "gap_high",
    "pairs",
    "difference",
    "tolerance",
    "verdict",
    "agreement",
    "measurement",
    "claimed_ratio",
    "kept_ratio",
    "peak_ratio",
    "float_share",
]

#: how a tested claim came out, per verdict: ``scale``: the gap here against the paper's
#: (``agrees``: the paper's gap lies in the 95 % interval of the paired gap; ``larger`` /
#: ``smaller``: the whole interval lies above / below it; ``one seed``: no interval;
#: ``no gap``: no 32-bit row of the same recipe or no published gap); ``memory``: the
#: 1-bit row ``holds`` or ``does not hold`` (the measured ratio of what autograd keeps,
#: against the slide's ratio), the 32-bit row ``accounting`` (the paper's accounting only);
#: a 32-bit row at another scale is the ``baseline`` the others' gaps are taken against
AGREEMENTS = ("agrees", "larger", "smaller", "one seed", "no gap", "holds", "does not hold", "accounting", "baseline")


def verdicts(
    published: pd.DataFrame,
    summary: pd.DataFrame,
    gaps: pd.DataFrame,
    paper_gaps: pd.DataFrame,
    claims: Claims,
    memory: "pd.DataFrame | None" = None,
) -> pd.DataFrame:
    """One line per published number: the claim, what this grid reproduced for it (the
    first grid row linked to it by paper_source, paper_table and paper_row, on the same
    dataset where there is one) and a verdict key:

    * ``within`` / ``outside``: a reproduction at paper scale (same dataset, network,
      epochs, all the data), within ``tolerance`` points of the claim or not;
    * ``scale``: the linked rows ran on other data or at a smaller scale, so their gap to
      the 32-bit row of the same recipe (``gap``) is set beside the paper's (``claimed_gap``);
    * ``quoted``: a number the paper cites from another paper, on another network;
    * ``memory``: the memory slide, against the grid's ResNet-18 measurement
      (``reproduced`` in bytes at batch 256, ``difference`` relative to the claim);
    * ``not run``: no grid row is linked to it.

    Lines are sorted by verdict (:data:`VERDICT_ORDER`), then as published."""
    g = gaps.drop_duplicates("row").set_index("row") if len(gaps) else pd.DataFrame(columns=["gap"])
    pgap = {(r.paper_source, r.paper_row, r.dataset, r.metric): r.gap for r in paper_gaps.itertuples()}
    out = []
    for _, p in published.iterrows():
        metric = p["metric"]
        line = {
            k: p[k]
            for k in (
                "paper_source",
                "paper_table",
                "paper_row",
                "method",
                "dataset",
                "arch",
                "depth",
                "width",
                "epochs",
                "metric",
            )
        }
        line["claim"] = p["value"]
        if metric == MEMORY_METRIC:
            out.append(_memory_line(line, p, published, memory, claims))
            continue
        line["claimed_gap"] = pgap.get((p["paper_source"], p["paper_row"], p["dataset"], metric))
        linked = summary[
            (summary["paper_source"] == p["paper_source"])
            & (summary["paper_table"] == p["paper_table"])
            & (summary["paper_row"] == p["paper_row"])
        ].dropna(subset=["test_err_mean"])
        same = linked[linked["dataset"] == p["dataset"]]
        col = "test_err_mean" if metric == "top1_err" else "test_top5_mean"
        use = same if len(same) else linked
        quoted = is_quoted(p["paper_row"])
        if len(use) and (metric == "top1_err" or col in use):
            r = use.iloc[0]
            line.update(
                row=r["row"],
                run_dataset=r["dataset"],
                run_arch=r["arch"],
                run_depth=r["depth"],
                run_width=r["width"],
                run_epochs=int(r["epochs"]),
                subset=pd.notna(r.get("train_subset")),
                seeds=int(r["seeds"]),
                reproduced=r[col],
                reproduced_sd=r["test_err_std"] if metric == "top1_err" else None,
            )
            if metric == "top1_err":
                line.update(reproduced_low=r.get("test_err_low"), reproduced_high=r.get("test_err_high"))
                if r["row"] in g.index:
                    gap = g.loc[r["row"]]
                    line.update(
                        gap=gap["gap"], gap_low=gap.get("gap_low"), gap_high=gap.get("gap_high"), pairs=gap.get("pairs")
                    )
            if quoted:
                line["verdict"] = "quoted"
            elif len(same) and _paper_scale(r, p):
                line["difference"] = r[col] - p["value"]
                line["tolerance"] = claims.tolerance[p["dataset"]]
                line["verdict"] = "within" if abs(line["difference"]) <= line["tolerance"] else "outside"
            else:
                line["verdict"] = "scale"
                line["agreement"] = "baseline" if p["method"] == "fp32" else _gap_agreement(line)
        else:
            line["verdict"] = "quoted" if quoted else "not run"
        out.append(line)
    df = pd.DataFrame(out, columns=VERDICT_COLUMNS)
    rank = {k: i for i, k in enumerate(VERDICT_ORDER)}
    return (
        df.assign(_o=df["verdict"].map(rank)).sort_values("_o", kind="stable").drop(columns="_o").reset_index(drop=True)
    )


def _gap_agreement(line: dict) -> str:
    claimed, gap, low, high = (line.get(k) for k in ("claimed_gap", "gap", "gap_low", "gap_high"))
    if claimed is None or gap is None or pd.isna(claimed) or pd.isna(gap):
        return "no gap"
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "one seed"
    if low > claimed:
        return "larger"
    if high < claimed:
        return "smaller"
    return "agrees"


def _memory_line(line: dict, p, published: pd.DataFrame, memory, claims: Claims) -> dict:
    """The memory slide against the grid's ResNet-18 measurement: the paper's accounting
    (``reproduced``, bytes at batch 256; ``difference`` relative to the claim) and, for a
    row below 32 bits, the claim that training memory falls by the slide's ratio
    (``claimed_ratio``, 32-bit claim over this one) against what autograd keeps and the
    step peak, measured (``kept_ratio``, ``peak_ratio``: fp32's over the method's), with
    the share of what autograd keeps that stays in float (``float_share``)."""
    line["verdict"] = "not run"
    if memory is None or not len(memory):
        return line
    r18 = memory[(memory["arch"] == "resnet18") & (memory["method"] == p["method"])]
    acc = r18[(r18["quantity"] == "paper accounting") & (r18["kind"] == "total")]
    if not len(acc):
        return line
    name = acc["measurement"].iloc[0] if "measurement" in acc else None
    got = float(acc["bytes_per_image"].iloc[0]) * 256
    line.update(reproduced=got, difference=got / p["value"] - 1, verdict="memory", run_arch="resnet18")
    line.update(measurement=name, agreement="accounting")
    if p["method"] == "fp32":
        return line
    base = published[
        (published["metric"] == MEMORY_METRIC)
        & (published["method"] == "fp32")
        & (published["paper_source"] == p["paper_source"])
        & (published["paper_table"] == p["paper_table"])
    ]
    mine = r18[r18["measurement"] == name] if name is not None else r18
    tot = mine[mine["kind"] == "total"].set_index("quantity")
    kept = tot["ratio_vs_fp32"].get("autograd keeps") if "ratio_vs_fp32" in tot else None
    if not len(base) or kept is None or pd.isna(kept):
        return line
    parts = mine[(mine["quantity"] == "autograd keeps") & (mine["kind"] != "total")]
    total = tot["bytes_per_image"].get("autograd keeps")
    floats = parts.loc[parts["kind"] == "float activations", "bytes_per_image"].sum()
    claimed = float(base["value"].iloc[0]) / p["value"]
    line.update(
        claimed_ratio=claimed,
        kept_ratio=float(kept),
        peak_ratio=tot["ratio_vs_fp32"].get("step peak"),
        float_share=floats / total if total else None,
        tolerance=claims.memory_tolerance,
        agreement="holds" if kept >= claimed * (1 - claims.memory_tolerance) else "does not hold",
    )
    return line


def table_changes(summary: pd.DataFrame, shown: "list | tuple") -> pd.DataFrame:
    """The rows of the tables not in ``shown`` (a grid's own, such as ``recipe``): each
    row against the first row of its method in its table (``reference``), the run
    fields that differ (``changed``: ``field = value`` pairs, in field order) and the
    difference in mean test error (none for the reference itself)."""
    extra = summary[~summary["table"].isin(list(shown))]
    out = []
    for table, rows in extra.groupby("table", sort=False):
        first = {}
        for _, r in rows.iterrows():
            ref = first.setdefault(r["method"], r)
            mine, theirs = json.loads(r["recipe"]), json.loads(ref["recipe"])
            changed = [(k, mine.get(k)) for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
            own = r["row"] == ref["row"]
            out.append(
                {
                    "table": table,
                    "row": r["row"],
                    "method": r["method"],
                    "reference": ref["row"],
                    "changed": changed,
                    "difference": None if own else r["test_err_mean"] - ref["test_err_mean"],
                }
            )
    return pd.DataFrame(out, columns=["table", "row", "method", "reference", "changed", "difference"])
