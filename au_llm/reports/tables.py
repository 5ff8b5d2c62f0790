"""Metric tables of one run from its predictions table, the metric files and the headline table.

Two F1 conventions are computed side by side: **binary F1** (positive class) and **"macro" F1**
(mean of positive- and negative-class F1, AU-LLM's convention). "Pooled" metrics concatenate the
test clips of all folds of one seed and compute each AU's metric once; "fold mean" metrics are
computed per fold and averaged over the folds where they are defined. See :mod:`au_llm.metrics`
for the degenerate cases: an AU without a positive test clip is undefined (n/a in every table,
left out of every mean, named with its counts in ``summary.json``'s ``undefined_aus`` and in a
line of the headline and the report).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from au_llm import metrics as M
from au_llm.io_utils import atomic_write_csv, atomic_write_text
from au_llm.runs.layout import (
    METRICS_PER_AU,
    METRICS_PER_AU_SEED_MEAN,
    METRICS_PER_FOLD,
    SUMMARY,
)

logger = logging.getLogger(__name__)

OPTIMISTIC_NOTE = "optimistic: thresholds tuned on test labels"
"""Label attached to every number and plot of a run whose thresholds saw the test labels."""

ID_COLUMNS: tuple[str, ...] = ("dataset", "subject", "clip", "fold", "seed")
"""Identifying columns every predictions table must have."""

PUBLISHED_AU_LLM_MACRO_F1: dict[str, float] = {"casme2": 0.814, "samm": 0.619}
"""AU-LLM's published average F1 in its own "macro" convention (Liu et al., 2025), as fractions."""

_DATASET_ALIASES: dict[str, str] = {"casme2": "casme2", "casmeii": "casme2", "samm": "samm"}

SUMMARY_KEYS: tuple[str, ...] = (
    "pooled_binary_f1",
    "pooled_macro_f1",
    "pooled_precision",
    "pooled_recall",
    "pooled_roc_auc",
    "fold_mean_binary_f1",
    "fold_mean_macro_f1",
    "baseline_binary_f1",
    "baseline_macro_f1",
)
"""Run-level numbers (means over AUs) computed per seed and aggregated over seeds."""

DEFINITIONS: dict[str, str] = {
    "binary_f1": "F1 of the positive class, 2TP/(2TP+FP+FN); undefined (null) when TP+FP+FN=0",
    "undefined": "every metric of an AU is undefined (null) on clips without a positive label",
    "macro_f1": '"macro" F1: mean of positive-class and negative-class F1 (AU-LLM convention)',
    "pooled": "test clips of all folds of one seed concatenated, each AU's metric computed once",
    "fold_mean": "metric computed per fold, averaged over the folds where it is defined",
    "baseline": "always-positive baseline: every clip predicted positive",
    "mean_over_aus": "mean of per-AU values over the AUs where the value is defined",
    "seeds": "metrics_* are means over seeds; metrics_std is the sample std (ddof=1), null for one",
}
"""Short definitions written into summary.json."""

_PER_AU_METRICS: tuple[str, ...] = (
    "binary_f1",
    "macro_f1",
    "precision",
    "recall",
    "roc_auc",
    "binary_f1_fold_mean",
    "macro_f1_fold_mean",
    "baseline_binary_f1",
    "baseline_macro_f1",
)


@dataclass
class RunTables:
    """Metric tables of one run.

    Attributes:
        per_au: One row per (seed, AU): ``seed, au``, pooled ``binary_f1, macro_f1, precision,
            recall, roc_auc``, ``binary_f1_fold_mean, macro_f1_fold_mean`` with the number of
            folds where each is defined (``binary_f1_n_folds, macro_f1_n_folds``, out of
            ``n_folds``), the counts ``n_clips, n_pos, n_neg, n_pred_pos, tp, fp, fn, tn``, and the
            always-positive baseline ``baseline_binary_f1, baseline_macro_f1``.
        per_au_mean: One row per AU: the numeric columns of ``per_au`` averaged over seeds (nan
            values skipped), each metric with a ``<metric>_std`` column (ddof=1; nan for one seed),
            and ``n_seeds``.
        per_fold: One row per (seed, fold, AU): ``seed, fold, au, binary_f1, macro_f1, precision,
            recall, roc_auc, n_clips, n_pos, n_neg, n_pred_pos, tp, fp, fn, tn``.
        summary: Run-level numbers: ``aus, seeds, n_seeds, datasets, folds, n_folds, n_clips,
            n_rows, n_clips_per_seed``; ``metrics`` (each of ``SUMMARY_KEYS`` averaged over
            seeds), ``metrics_std``, ``metrics_n_seeds``, ``n_aus_defined`` (fewest AUs over
            seeds where each mean over AUs is defined), ``per_seed`` (seed -> values) and
            ``definitions``.
        aus: AU numbers, in column order.
    """

    per_au: pd.DataFrame
    per_au_mean: pd.DataFrame
    per_fold: pd.DataFrame
    summary: dict[str, Any]
    aus: list[int] = field(default_factory=list)


def _natural_key(text: str) -> list[Any]:
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text) if p]


def _row_label(frame: pd.DataFrame, pos: int) -> str:
    row = frame.iloc[pos]
    clip = "/".join(str(row[c]) for c in ("dataset", "subject", "clip"))
    return f"predictions row {pos} ({clip})"


def _numeric_column(
    frame: pd.DataFrame, column: str, *, binary: bool, unknown: bool = False
) -> np.ndarray:
    """Return a column as float [N], raising on missing, non-numeric or out-of-range values.

    With ``unknown``, an empty cell is allowed and read as nan (an unknown label).
    """
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if binary:
        bad = ~np.isin(values, (0.0, 1.0))
        if unknown:
            bad &= ~frame[column].isna().to_numpy() & (frame[column].astype(str) != "").to_numpy()
        expected = "0 or 1"
    else:
        bad = ~np.isfinite(values)
        expected = "a finite number"
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{_row_label(frame, pos)}: {column} = {frame[column].iloc[pos]!r}, expected {expected}"
        )
    return values


def _validate(predictions: pd.DataFrame, aus: Sequence[int]) -> None:
    missing = [c for c in ID_COLUMNS if c not in predictions.columns]
    missing += [
        M.au_column(au, kind)
        for au in aus
        for kind in M.COLUMN_KINDS
        if M.au_column(au, kind) not in predictions.columns
    ]
    if missing:
        raise ValueError(f"predictions table lacks the columns {', '.join(missing)}")
    if predictions.empty:
        raise ValueError("predictions table has no rows")
    keys = predictions[["seed", "fold", "dataset", "subject", "clip"]].astype(str)
    dup = keys.duplicated()
    if dup.any():
        raise ValueError(f"{_row_label(predictions, int(np.flatnonzero(dup)[0]))}: duplicate row")
    clip_keys = keys.drop(columns="fold")
    if clip_keys.duplicated().any():
        pos = int(np.flatnonzero(clip_keys.duplicated())[0])
        logger.warning(
            "%s: clip tested in more than one fold of the same seed; pooled metrics count it "
            "once per fold",
            _row_label(predictions, pos),
        )


def _seed_tables(
    y_true: np.ndarray,
    probs: np.ndarray,
    preds: np.ndarray,
    folds: np.ndarray,
    aus: Sequence[int],
    seed: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, float]]:
    """Per-AU rows, per-fold rows and the run-level values of one seed."""
    pooled = M.per_au_metrics(y_true, probs, preds, aus)
    baseline = M.always_positive_metrics(y_true, aus)
    fold_rows = M.per_fold_metrics(y_true, probs, preds, folds, aus)
    fold_means = M.fold_mean(fold_rows, aus)
    per_au = []
    for row, base, fmean in zip(pooled, baseline, fold_means, strict=True):
        per_au.append(
            {
                "seed": seed,
                **row,
                "binary_f1_fold_mean": fmean["binary_f1_fold_mean"],
                "macro_f1_fold_mean": fmean["macro_f1_fold_mean"],
                "binary_f1_n_folds": fmean["binary_f1_n_folds"],
                "macro_f1_n_folds": fmean["macro_f1_n_folds"],
                "n_folds": fmean["n_folds"],
                "baseline_binary_f1": base["binary_f1"],
                "baseline_macro_f1": base["macro_f1"],
            }
        )
    values: dict[str, float] = {}
    sources = {
        "pooled_": (per_au, M.METRIC_KEYS),
        "fold_mean_": (per_au, ("binary_f1_fold_mean", "macro_f1_fold_mean")),
        "baseline_": (per_au, ("baseline_binary_f1", "baseline_macro_f1")),
    }
    for prefix, (rows, keys) in sources.items():
        for key, value in M.summarise(rows, keys).items():
            name = key.replace("_fold_mean", "").replace("baseline_", "")
            values[prefix + name] = value
    return per_au, [{"seed": seed, **r} for r in fold_rows], values


def compute_tables(predictions: pd.DataFrame, aus: Sequence[int] | None = None) -> RunTables:
    """Compute every metric table of a run from its predictions table.

    Args:
        predictions: One row per test clip (and seed), columns ``dataset, subject, clip, fold,
            seed`` and ``AUxx_prob, AUxx_pred, AUxx_true`` per AU. ``_pred`` columns are used as
            given.
        aus: AU numbers to evaluate; None or empty takes every AU with all three columns.

    Returns:
        The run's tables (see :class:`RunTables`).

    Raises:
        ValueError: For a missing column, an empty table, a duplicate clip, or a label or decision
            that is not 0/1 or a score that is not finite (the message names the row and clip).
    """
    aus = [int(a) for a in aus] if aus else M.parse_au_columns(predictions.columns)
    if not aus:
        raise ValueError("predictions table has no AUxx_prob/AUxx_pred/AUxx_true columns")
    frame = predictions.reset_index(drop=True)
    _validate(frame, aus)
    seeds_col = _numeric_column(frame, "seed", binary=False)
    if not np.all(seeds_col == np.round(seeds_col)):
        pos = int(np.flatnonzero(seeds_col != np.round(seeds_col))[0])
        raise ValueError(f"{_row_label(frame, pos)}: seed = {seeds_col[pos]!r}, expected an int")
    y_true = np.stack(
        [_numeric_column(frame, M.au_column(a, "true"), binary=True, unknown=True) for a in aus], 1
    )
    preds = np.stack([_numeric_column(frame, M.au_column(a, "pred"), binary=True) for a in aus], 1)
    probs = np.stack([_numeric_column(frame, M.au_column(a, "prob"), binary=False) for a in aus], 1)
    preds = preds.astype(int)
    if not np.isnan(y_true).any():
        y_true = y_true.astype(int)
    folds = frame["fold"].astype(str).to_numpy()
    seeds = sorted({int(s) for s in seeds_col})

    per_au_rows: list[dict[str, Any]] = []
    fold_rows: list[dict[str, Any]] = []
    per_seed: dict[str, dict[str, float]] = {}
    n_clips_per_seed: dict[str, int] = {}
    for seed in seeds:
        mask = seeds_col == seed
        au_rows, f_rows, values = _seed_tables(
            y_true[mask], probs[mask], preds[mask], folds[mask], aus, seed
        )
        per_au_rows += au_rows
        fold_rows += f_rows
        per_seed[str(seed)] = values
        n_clips_per_seed[str(seed)] = int(mask.sum())

    per_au = pd.DataFrame(per_au_rows)
    per_fold = pd.DataFrame(fold_rows)
    fold_order = sorted(dict.fromkeys(folds.tolist()), key=_natural_key)
    per_fold["fold_order"] = per_fold["fold"].map({f: i for i, f in enumerate(fold_order)})
    per_fold = (
        per_fold.sort_values(["seed", "fold_order", "au"], kind="mergesort")
        .drop(columns="fold_order")
        .reset_index(drop=True)
    )
    aggregated = M.aggregate_seeds([{k: v[k] for k in SUMMARY_KEYS} for v in per_seed.values()])
    summary: dict[str, Any] = {
        "aus": aus,
        "seeds": seeds,
        "n_seeds": len(seeds),
        "datasets": sorted(dict.fromkeys(frame["dataset"].astype(str).tolist())),
        "folds": fold_order,
        "n_folds": len(fold_order),
        "n_clips": int(len(frame[["dataset", "subject", "clip"]].astype(str).drop_duplicates())),
        "n_rows": len(frame),
        "n_clips_per_seed": n_clips_per_seed,
        "metrics": {k: aggregated[k]["mean"] for k in SUMMARY_KEYS},
        "metrics_std": {k: aggregated[k]["std"] for k in SUMMARY_KEYS},
        "metrics_n_seeds": {k: aggregated[k]["n"] for k in SUMMARY_KEYS},
        "n_aus_defined": {
            k: min(int(v[f"{k}_n_aus"]) for v in per_seed.values()) for k in SUMMARY_KEYS
        },
        "per_seed": per_seed,
        "definitions": dict(DEFINITIONS),
    }
    per_au_mean = _mean_over_seeds(per_au, aus)
    summary["undefined_aus"] = undefined_aus(per_au_mean)
    return RunTables(
        per_au=per_au,
        per_au_mean=per_au_mean,
        per_fold=per_fold,
        summary=summary,
        aus=aus,
    )


def undefined_aus(per_au_mean: pd.DataFrame) -> list[dict[str, Any]]:
    """The AUs without a positive test clip in any seed, with their counts and why.

    Returns:
        One ``{"au", "n_clips", "n_pos", "reason"}`` per undefined AU (``n_clips`` counts the
        test clips with a known label).
    """
    rows = []
    for _, row in per_au_mean[per_au_mean["n_pos"] == 0].iterrows():
        n_clips = int(row["n_clips"])
        reason = (
            f"no positive among its {n_clips} test clips"
            if n_clips
            else "no test clip with a known label"
        )
        rows.append({"au": int(row["au"]), "n_clips": n_clips, "n_pos": 0, "reason": reason})
    return rows


def undefined_line(summary: Mapping[str, Any]) -> str | None:
    """The line naming the undefined AUs, left out of the means; None when every AU is defined."""
    undefined = summary.get("undefined_aus") or []
    if not undefined:
        return None
    listed = "; ".join(f"AU{u['au']} ({u['reason']})" for u in undefined)
    return (
        f"undefined, shown as n/a and left out of every mean: {listed}; "
        f"{len(summary['aus']) - len(undefined)} of {len(summary['aus'])} AUs are scored"
    )


def _mean_over_seeds(per_au: pd.DataFrame, aus: Sequence[int]) -> pd.DataFrame:
    numeric = [c for c in per_au.columns if c not in ("seed", "au")]
    rows = []
    for au in aus:
        group = per_au[per_au["au"] == au]
        row: dict[str, Any] = {"au": int(au), "n_seeds": len(group)}
        for col in numeric:
            agg = M.aggregate_seeds([{col: v} for v in group[col].to_numpy(dtype=float)])[col]
            row[col] = agg["mean"]
            if col in _PER_AU_METRICS:
                row[f"{col}_std"] = agg["std"]
        rows.append(row)
    return pd.DataFrame(rows)


def normalise_dataset(name: str | None) -> str | None:
    """``CASME II``/``casme2`` -> ``casme2``, ``SAMM`` -> ``samm``; None for other datasets."""
    if name is None:
        return None
    return _DATASET_ALIASES.get(re.sub(r"[^a-z0-9]", "", name.lower()))


def format_metric(value: Any, std: Any = None, digits: int = 3) -> str:
    """Format a metric value (nan as n/a), with `` ± std`` when std is a defined number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int | np.integer):
        return str(int(value))
    text = f"{float(value):.{digits}f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" ± {float(std):.{digits}f}"
    return text


def _json_safe(value: Any) -> Any:
    """Convert numpy scalars to Python values and nan/inf to None, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def mark_optimistic(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` with a last column ``note`` saying the thresholds saw test labels."""
    return table.assign(note=OPTIMISTIC_NOTE)


def write_metric_files(
    tables: RunTables,
    out_dir: Path,
    *,
    optimistic: bool,
    text_per_au: pd.DataFrame | None = None,
) -> None:
    """Write the metric tables and ``summary.json`` (all atomically).

    Files: ``metrics_per_au.csv`` (per seed and AU), ``metrics_per_au_seed_mean.csv`` (per AU,
    mean and std over seeds), ``metrics_per_fold.csv`` and ``summary.json`` (nan written as null).

    Args:
        tables: Output of :func:`compute_tables`.
        out_dir: Folder for the files (created when missing).
        optimistic: Recorded as ``"optimistic"`` in summary.json, with ``"note"`` when true;
            every CSV then also gets a last column ``note`` holding :data:`OPTIMISTIC_NOTE`.
        text_per_au: Metrics of text answers (:func:`au_llm.reports.answers.answer_tables`);
            appended to ``metrics_per_au.csv``, whose first column ``head`` then tells the
            linear head's rows (``linear``) from each format's (``text:<format>``).
    """
    out_dir = Path(out_dir)
    per_au = tables.per_au
    if text_per_au is not None and not text_per_au.empty:
        linear = per_au.assign(head="linear")
        per_au = pd.concat([linear, text_per_au], ignore_index=True)
        per_au = per_au[["head", *[c for c in per_au.columns if c != "head"]]]
    for name, table in (
        (METRICS_PER_AU, per_au),
        (METRICS_PER_AU_SEED_MEAN, tables.per_au_mean),
        (METRICS_PER_FOLD, tables.per_fold),
    ):
        atomic_write_csv(out_dir / name, mark_optimistic(table) if optimistic else table)
    summary: dict[str, Any] = {"optimistic": bool(optimistic)}
    if optimistic:
        summary["note"] = OPTIMISTIC_NOTE
    summary.update(tables.summary)
    text = json.dumps(_json_safe(summary), indent=2, allow_nan=False)
    atomic_write_text(out_dir / SUMMARY, text + "\n")


def partial_line(partial: dict[str, Any]) -> str:
    """``partial: N of M folds (missing: ...)`` for a run's ``summary["partial"]``."""
    missing = partial["missing"]
    shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
    return f"partial: {partial['finished']} of {partial['expected']} folds (missing: {shown})"


def headline_table(tables: RunTables, *, optimistic: bool = False) -> str:
    """A compact fixed-width table to print at the end of a run.

    Args:
        tables: Output of :func:`compute_tables`.
        optimistic: Add the optimistic note as the first line.

    Returns:
        Lines of per-AU binary F1, "macro" F1, ROC AUC and always-positive binary F1 (means over
        seeds), then the mean over AUs (the run's headline numbers).
    """
    header = f"{'AU':<6}{'binF1':>8}{'macroF1':>9}{'AUC':>8}{'alwaysPos':>11}{'pos':>7}"
    lines = [OPTIMISTIC_NOTE] if optimistic else []
    if tables.summary.get("partial"):
        lines.append(partial_line(tables.summary["partial"]))
    lines += tables.summary.get("warnings", [])
    lines += [
        "binF1 = binary F1 (positive class); macroF1 = mean of pos./neg. class F1 (AU-LLM); "
        "alwaysPos = binary F1 of predicting every clip positive",
        header,
        "-" * len(header),
    ]
    for _, row in tables.per_au_mean.iterrows():
        lines.append(
            f"{'AU' + str(int(row['au'])):<6}{format_metric(row['binary_f1']):>8}"
            f"{format_metric(row['macro_f1']):>9}{format_metric(row['roc_auc']):>8}"
            f"{format_metric(row['baseline_binary_f1']):>11}{row['n_pos']:>7g}"
        )
    m = tables.summary["metrics"]
    lines.append("-" * len(header))
    lines.append(
        f"{'mean':<6}{format_metric(m['pooled_binary_f1']):>8}{format_metric(m['pooled_macro_f1']):>9}"
        f"{format_metric(m['pooled_roc_auc']):>8}{format_metric(m['baseline_binary_f1']):>11}"
    )
    at_train = m.get("binary_f1_train_threshold")
    if at_train is not None:
        lines.append(
            f"binF1 {format_metric(at_train)} at per-AU thresholds chosen on each fold's training "
            "predictions (never on test labels), beside the binF1 above at the run's "
            "threshold policy"
        )
    undefined = undefined_line(tables.summary)
    if undefined is not None:
        lines.append(undefined)
    if tables.summary["n_seeds"] > 1:
        lines.append(f"(means over {tables.summary['n_seeds']} seeds)")
    return "\n".join(lines)
