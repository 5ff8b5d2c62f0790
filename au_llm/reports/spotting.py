"""The MEGC table of a spotting run (``protocol: megc``), rebuilt from its finished folds.

Each finished fold's record holds the held-out subject's annotated expressions and the intervals
every method spotted in that subject's recordings, with their AU decisions
(:func:`~au_llm.spot.protocol.spot_fold`). Per seed, method (:data:`~au_llm.spot.protocol.METHODS`)
and dataset (and ``all`` when the run holds several), the folds' intervals are pooled and scored
against the pooled annotations by the MEGC rules (:func:`~au_llm.spot.evaluate.evaluate_spotting`:
hits at IoU >= 0.5, micro- and macro-expressions apart): spotting precision, recall and F1
overall and per kind, the AU F1 on the hits and the STR-style score (spotting F1 x AU F1). The
table gives every seed's values (``spotting.csv``) and ``spotting.json`` their mean and standard
deviation over the seeds; ``report.md`` gets the table of means.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from au_llm.io_utils import atomic_write_csv, atomic_write_text
from au_llm.metrics import au_column
from au_llm.runs.layout import REPORT, SPOTTING_SUMMARY, SPOTTING_TABLE
from au_llm.runs.run import Run
from au_llm.spot.evaluate import OVERALL, evaluate_spotting
from au_llm.spot.intervals import KINDS
from au_llm.spot.protocol import METHODS, RECORDING_KEYS

ALL = "all"
"""The dataset name of the rows pooling every dataset of a run."""
METRICS = [
    "f1",
    "precision",
    "recall",
    *[f"{k}_{m}" for k in KINDS for m in ("f1", "precision", "recall")],
]
METRICS += ["au_f1", "strs", "tp", "fp", "fn", "spotted", "annotated"]
SECTION = "## Spotting (MEGC rules)"


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in columns:
        if column not in frame.columns:
            frame[column] = pd.Series(dtype=object)
    return frame


def score_row(spotted: pd.DataFrame, annotated: pd.DataFrame, aus: list[int]) -> dict[str, Any]:
    """The MEGC scores of one method's intervals against the annotations (:data:`METRICS`)."""
    result = evaluate_spotting(spotted, annotated, aus=aus, by=RECORDING_KEYS)
    overall = result.counts[OVERALL]
    row: dict[str, Any] = {
        "f1": overall.f1,
        "precision": overall.precision,
        "recall": overall.recall,
    }
    for kind in KINDS:
        counts = result.counts[kind]
        row |= {
            f"{kind}_f1": counts.f1,
            f"{kind}_precision": counts.precision,
            f"{kind}_recall": counts.recall,
        }
    row |= {
        "au_f1": result.au_f1,
        "strs": result.strs,
        "tp": overall.tp,
        "fp": overall.fp,
        "fn": overall.fn,
        "spotted": len(spotted),
        "annotated": len(annotated),
    }
    return row


def spotting_table(records: list[dict[str, Any]], aus: list[int]) -> pd.DataFrame:
    """One row per seed, dataset and method: the :data:`METRICS` of the pooled folds.

    Args:
        records: Finished fold records holding ``spotting`` (others are skipped).
        aus: The run's AUs.
    """
    au_columns = [au_column(au, kind) for au in aus for kind in ("prob", "pred")]
    interval_columns = ["method", *RECORDING_KEYS, "onset", "apex", "offset", "kind", *au_columns]
    annotation_columns = [*RECORDING_KEYS, "onset", "offset", "kind", "aus"]
    rows = []
    seeds = sorted({int(r["seed"]) for r in records if "spotting" in r})
    for seed in seeds:
        mine = [r["spotting"] for r in records if "spotting" in r and int(r["seed"]) == seed]
        spotted = _frame([row for s in mine for row in s["intervals"]], interval_columns)
        annotated = _frame([row for s in mine for row in s["annotated"]], annotation_columns)
        annotated["aus"] = annotated["aus"].fillna("").astype(str)
        datasets = sorted(set(annotated["dataset"]))
        for dataset in [*datasets, *([ALL] if len(datasets) > 1 else [])]:
            truth = annotated if dataset == ALL else annotated[annotated["dataset"] == dataset]
            found = spotted if dataset == ALL else spotted[spotted["dataset"] == dataset]
            for method in METHODS:
                chosen = found[found["method"] == method]
                row = score_row(chosen, truth, aus)
                rows.append({"seed": seed, "dataset": dataset, "method": method, **row})
    return pd.DataFrame(rows, columns=["seed", "dataset", "method", *METRICS])


def _number(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def spotting_summary(table: pd.DataFrame) -> dict[str, Any]:
    """Mean and standard deviation over seeds of every metric, by dataset and method.

    Returns:
        ``{"seeds": [...], "table": {dataset: {method: {metric: {"mean", "std",
        "per_seed"}}}}}``; a metric undefined in a seed (no interval spotted: no precision) is
        left out of its mean, and undefined values are None.
    """
    summary: dict[str, Any] = {"seeds": sorted(int(s) for s in table["seed"].unique())}
    nested: dict[str, Any] = {}
    for (dataset, method), rows in table.groupby(["dataset", "method"], sort=False):
        entry = {}
        for metric in METRICS:
            values = rows[metric].astype(float).to_numpy()
            defined = values[~np.isnan(values)]
            entry[metric] = {
                "mean": float(defined.mean()) if len(defined) else None,
                "std": float(defined.std()) if len(defined) else None,
                "per_seed": [_number(float(v)) for v in values],
            }
        nested.setdefault(str(dataset), {})[str(method)] = entry
    summary["table"] = nested
    return summary


def _cell(entry: dict[str, Any], metric: str, seeds: int) -> str:
    mean, std = entry[metric]["mean"], entry[metric]["std"]
    if mean is None:
        return "-"
    return f"{mean:.3f}" + (f" ± {std:.3f}" if seeds > 1 else "")


def spotting_markdown(summary: dict[str, Any]) -> str:
    """The report's section: the table of means (± std over seeds)."""
    seeds = len(summary["seeds"])
    lines = [
        SECTION,
        "",
        "Spotted intervals of the held-out subjects' recordings scored by the MEGC rules (hit: "
        "IoU >= 0.5 with an annotation of the same kind; each annotation hit once). `rule`: "
        "the peak-rule spotter; `random`: its intervals moved to random places; `none`: "
        f"nothing spotted. Mean ± std over {seeds} seed(s); per seed in `{SPOTTING_TABLE}`.",
        "",
        *(
            [
                f"{summary['excluded_annotations']} annotated expressions failed alignment "
                "(listed above) and are not among the annotations scored here.",
                "",
            ]
            if summary.get("excluded_annotations")
            else []
        ),
        "| dataset | method | spotting F1 | precision | recall | micro F1 | macro F1 "
        "| AU F1 on hits | STR score |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    metrics = ["f1", "precision", "recall", "micro_f1", "macro_f1", "au_f1", "strs"]
    for dataset, methods in summary["table"].items():
        for method, entry in methods.items():
            cells = " | ".join(_cell(entry, m, seeds) for m in metrics)
            lines.append(f"| {dataset} | {method} | {cells} |")
    return "\n".join(lines) + "\n"


def write_spotting_report(run: Run, aus: list[int]) -> dict[str, Any] | None:
    """Write ``spotting.csv``, ``spotting.json`` and the report's spotting section.

    Returns:
        The summary (:func:`spotting_summary`); None when no finished fold holds spotting.
    """
    scan = run.scan_folds()
    records = run.fold_records(scan.whole)
    table = spotting_table(records, aus)
    if table.empty:
        return None
    summary = spotting_summary(table)
    summary["excluded_annotations"] = len(run.info().get("excluded") or [])
    atomic_write_csv(run.layout.output(SPOTTING_TABLE), table)
    atomic_write_text(
        run.layout.output(SPOTTING_SUMMARY), json.dumps(summary, indent=2, allow_nan=False)
    )
    report = run.layout.output(REPORT)
    text = report.read_text(encoding="utf-8") if report.exists() else ""
    text = text.split(SECTION)[0].rstrip("\n")
    atomic_write_text(report, f"{text}\n\n{spotting_markdown(summary)}")
    return summary
