"""Metric tables, plots and a markdown report of one protocol run, from its predictions table.

Everything is recomputed from the per-clip predictions table (``predictions.csv``) alone: one row
per test clip with ``dataset, subject, clip, fold, seed`` and, per AU, ``AUxx_prob`` (score),
``AUxx_pred`` (0/1 decision, the threshold policy already applied by the protocol) and
``AUxx_true`` (0/1 label). Decisions are read as given, never re-thresholded here.

Two F1 conventions are reported side by side and always labelled: **binary F1** (positive class)
and **"macro" F1** (mean of positive- and negative-class F1, AU-LLM's convention). "Pooled" metrics
concatenate the test clips of all folds of one seed and compute each AU's metric once; "fold mean"
metrics are computed per fold and averaged over the folds where they are defined. See
:mod:`au_llm.metrics` for the degenerate cases.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from au_llm import metrics as M
from au_llm.io_utils import atomic_write_bytes, atomic_write_csv, atomic_write_text

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


def _numeric_column(frame: pd.DataFrame, column: str, binary: bool) -> np.ndarray:
    """Return a column as float [N], raising on missing, non-numeric or out-of-range values."""
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if binary:
        bad = ~np.isin(values, (0.0, 1.0))
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
    y_true = np.stack([_numeric_column(frame, M.au_column(a, "true"), True) for a in aus], 1)
    preds = np.stack([_numeric_column(frame, M.au_column(a, "pred"), True) for a in aus], 1)
    probs = np.stack([_numeric_column(frame, M.au_column(a, "prob"), False) for a in aus], 1)
    y_true, preds = y_true.astype(int), preds.astype(int)
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
    return RunTables(
        per_au=per_au,
        per_au_mean=_mean_over_seeds(per_au, aus),
        per_fold=per_fold,
        summary=summary,
        aus=aus,
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


def _normalise_dataset(name: str | None) -> str | None:
    if name is None:
        return None
    return _DATASET_ALIASES.get(re.sub(r"[^a-z0-9]", "", name.lower()))


def _save_figure(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _title(text: str, optimistic: bool) -> str:
    return f"{text}\n({OPTIMISTIC_NOTE})" if optimistic else text


def _plot_f1_bars(tables: RunTables, path: Path, dataset: str | None, optimistic: bool) -> Path:
    table = tables.per_au_mean
    labels = [f"AU{au}" for au in table["au"]]
    x = np.arange(len(labels))
    several = tables.summary["n_seeds"] > 1
    fig = Figure(figsize=(max(7.0, 1.3 * len(labels) + 3.0), 4.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    panels = (
        ("binary_f1", "Binary F1 (positive class)"),
        ("macro_f1", '"Macro" F1 (mean of positive- and negative-class F1;\nAU-LLM convention)'),
    )
    reference_key = _normalise_dataset(dataset)
    for ax, (key, panel_title) in zip(axes, panels, strict=True):
        model_mean = tables.summary["metrics"][f"pooled_{key}"]
        base_mean = tables.summary["metrics"][f"baseline_{key}"]
        err = table[f"{key}_std"].to_numpy(dtype=float) if several else None
        ax.bar(
            x - 0.2,
            table[key].to_numpy(dtype=float),
            0.4,
            yerr=err,
            capsize=3,
            color="tab:blue",
            label=f"model (mean {_fmt(model_mean)})",
        )
        ax.bar(
            x + 0.2,
            table[f"baseline_{key}"].to_numpy(dtype=float),
            0.4,
            color="lightgrey",
            edgecolor="grey",
            hatch="//",
            label=f"always positive (mean {_fmt(base_mean)})",
        )
        if key == "macro_f1" and reference_key in PUBLISHED_AU_LLM_MACRO_F1:
            ref = PUBLISHED_AU_LLM_MACRO_F1[reference_key]
            ax.axhline(
                ref,
                color="tab:red",
                linestyle="--",
                label=f"AU-LLM paper (own convention): {ref:.3f}",
            )
        ax.set_xticks(x, labels)
        ax.set_ylim(0, 1.3)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_title(panel_title, fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
    axes[0].set_ylabel("F1, pooled over folds")
    seeds_note = f", mean ± std over {tables.summary['n_seeds']} seeds" if several else ""
    head = f"{dataset} per-AU F1" if dataset else "Per-AU F1"
    fig.suptitle(_title(f"{head}{seeds_note}", optimistic), fontsize=11)
    return _save_figure(fig, path)


def _fold_matrix(tables: RunTables) -> np.ndarray:
    """[F, A] binary F1 per fold and AU, averaged over seeds (nan where never defined)."""
    folds, aus = tables.summary["folds"], tables.aus
    matrix = np.full((len(folds), len(aus)), np.nan)
    grouped = tables.per_fold.groupby(["fold", "au"], sort=False)["binary_f1"]
    for (fold, au), values in grouped:
        mean, _ = M.nanmean_count(values.to_numpy(dtype=float))
        matrix[folds.index(fold), aus.index(int(au))] = mean
    return matrix


def _plot_fold_heatmap(
    tables: RunTables, path: Path, dataset: str | None, optimistic: bool
) -> Path:
    folds, aus = tables.summary["folds"], tables.aus
    matrix = _fold_matrix(tables)
    fig = Figure(
        figsize=(max(5.0, 0.7 * len(aus) + 3.0), max(3.5, 0.32 * len(folds) + 2.2)),
        layout="constrained",
    )
    ax = fig.subplots()
    cmap = colormaps["viridis"].with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(np.arange(len(aus)), [f"AU{au}" for au in aus])
    ax.set_yticks(np.arange(len(folds)), folds, fontsize=8 if len(folds) > 20 else 10)
    ax.set_xlabel("AU")
    ax.set_ylabel("fold (held-out subject or domain pair)")
    if matrix.size <= 600:
        for (i, j), value in np.ndenumerate(matrix):
            text = "n/a" if math.isnan(value) else f"{value:.2f}"
            color = "black" if math.isnan(value) or value > 0.6 else "white"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(image, ax=ax, label="binary F1 (positive class)")
    n_nan = int(np.isnan(matrix).sum())
    note = (
        f"grey / n/a: binary F1 undefined ({n_nan} cells: no positive clip and no positive "
        "prediction in that fold)"
    )
    ax.set_title(note, fontsize=8)
    seeds = tables.summary["n_seeds"]
    head = f"{dataset} binary F1 per fold" if dataset else "Binary F1 per fold"
    head += f" (mean over {seeds} seeds)" if seeds > 1 else ""
    fig.suptitle(_title(head, optimistic), fontsize=11)
    return _save_figure(fig, path)


def write_plots(
    tables: RunTables, out_dir: Path, dataset: str | None, optimistic: bool
) -> list[Path]:
    """Draw the run's plots as PNG files.

    Args:
        tables: Output of :func:`compute_tables`.
        out_dir: Folder for the files (created when missing).
        dataset: Test dataset name; when it is CASME II or SAMM, AU-LLM's published average (its
            own "macro" convention) is drawn as a reference line on the "macro" F1 panel.
        optimistic: Thresholds were tuned on test labels; every title says so.

    Returns:
        ``[out_dir/f1_per_au.png, out_dir/f1_fold_heatmap.png]``: per-AU bars of binary and
        "macro" F1 next to the always-positive baseline, and a fold x AU binary F1 heatmap.
    """
    out_dir = Path(out_dir)
    return [
        _plot_f1_bars(tables, out_dir / "f1_per_au.png", dataset, optimistic),
        _plot_fold_heatmap(tables, out_dir / "f1_fold_heatmap.png", dataset, optimistic),
    ]


def _fmt(value: Any, std: Any = None, digits: int = 3) -> str:
    """Format a metric value (nan as n/a), with `` ± std`` when std is a defined number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int | np.integer):
        return str(int(value))
    text = f"{float(value):.{digits}f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" ± {float(std):.{digits}f}"
    return text


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            items += _flatten(value, f"{name}.")
        else:
            items.append((name, value))
    return items


def _threshold_policy(config_summary: Mapping[str, Any], optimistic: bool) -> str:
    flat = dict(_flatten(config_summary))
    policy = flat.get("eval.threshold", flat.get("threshold"))
    if policy is None:
        policy = "test-oracle" if optimistic else "not recorded"
    text = f"`{policy}`"
    if policy == "fixed":
        fixed = flat.get("eval.fixed_threshold", flat.get("fixed_threshold"))
        text += f" (threshold {fixed})" if fixed is not None else ""
    elif policy == "train":
        text += " (per AU, chosen on the training clips' own predictions of each fold)"
    elif policy == "test-oracle":
        text += (
            " (per AU, chosen on the pooled test predictions, as AU-LLM's reference code does; "
            f"{OPTIMISTIC_NOTE})"
        )
    return text


def _headline_section(tables: RunTables, optimistic: bool) -> list[str]:
    s = tables.summary
    m, sd = s["metrics"], s["metrics_std"]
    n_aus = len(tables.aus)

    def val(key: str) -> str:
        return f"{_fmt(m[key], sd[key])} ({s['n_aus_defined'][key]}/{n_aus} AUs)"

    rows = [
        ["Binary F1 (positive class), pooled", val("pooled_binary_f1"), val("baseline_binary_f1")],
        [
            '"Macro" F1 (mean of pos./neg. class F1, AU-LLM convention), pooled',
            val("pooled_macro_f1"),
            val("baseline_macro_f1"),
        ],
        ["Binary F1, mean over folds", val("fold_mean_binary_f1"), ""],
        ['"Macro" F1, mean over folds', val("fold_mean_macro_f1"), ""],
        ["Precision, pooled", val("pooled_precision"), ""],
        ["Recall, pooled", val("pooled_recall"), ""],
        ["ROC AUC, pooled (threshold-free)", val("pooled_roc_auc"), "0.500 by definition"],
    ]
    lines = ["## Headline", ""]
    if optimistic:
        lines += [f"**{OPTIMISTIC_NOTE}**", ""]
    lines += [
        f"Mean over AUs of per-AU metrics. **Binary F1 (positive class): "
        f"{_fmt(m['pooled_binary_f1'], sd['pooled_binary_f1'])}**, against "
        f'{_fmt(m["baseline_binary_f1"])} for the always-positive baseline. The "macro" F1 '
        f"(AU-LLM's convention) is {_fmt(m['pooled_macro_f1'], sd['pooled_macro_f1'])}; the two "
        "conventions are not comparable with each other.",
        "",
    ]
    header = ["metric (mean over AUs)", "model", "always-positive baseline"]
    lines += _md_table(header, rows)
    datasets = [_normalise_dataset(d) for d in s["datasets"]]
    if len(datasets) == 1 and datasets[0] in PUBLISHED_AU_LLM_MACRO_F1:
        ref = PUBLISHED_AU_LLM_MACRO_F1[datasets[0]]
        lines += [
            "",
            f'For reference, AU-LLM reports {ref:.3f} on {s["datasets"][0]} in its own "macro" '
            "convention, with thresholds tuned on the pooled test predictions; compare it with "
            'the "macro" row only, and only when the AU sets and protocol match.',
        ]
    if s["n_seeds"] > 1:
        lines += ["", f"Values are means ± sample std over {s['n_seeds']} seeds."]
    return lines


def _per_au_section(tables: RunTables, optimistic: bool) -> list[str]:
    t = tables.per_au_mean
    several = tables.summary["n_seeds"] > 1

    def cell(row: pd.Series, key: str) -> str:
        return _fmt(row[key], row[f"{key}_std"] if several else None)

    header = [
        "AU",
        "clips",
        "positives",
        "predicted pos.",
        "binary F1",
        '"macro" F1',
        "precision",
        "recall",
        "ROC AUC",
        "binary F1 fold mean (folds)",
        "baseline binary F1",
        'baseline "macro" F1',
    ]
    rows = []
    for _, row in t.iterrows():
        folds = f"{_fmt(row['binary_f1_fold_mean'])} ({row['binary_f1_n_folds']:g}/"
        folds += f"{row['n_folds']:g})"
        rows.append(
            [
                f"AU{int(row['au'])}",
                f"{row['n_clips']:g}",
                f"{row['n_pos']:g}",
                f"{row['n_pred_pos']:g}",
                cell(row, "binary_f1"),
                cell(row, "macro_f1"),
                cell(row, "precision"),
                cell(row, "recall"),
                cell(row, "roc_auc"),
                folds,
                _fmt(row["baseline_binary_f1"]),
                _fmt(row["baseline_macro_f1"]),
            ]
        )
    m = tables.summary["metrics"]
    rows.append(
        [
            "**mean**",
            "",
            "",
            "",
            _fmt(m["pooled_binary_f1"]),
            _fmt(m["pooled_macro_f1"]),
            _fmt(m["pooled_precision"]),
            _fmt(m["pooled_recall"]),
            _fmt(m["pooled_roc_auc"]),
            _fmt(m["fold_mean_binary_f1"]),
            _fmt(m["baseline_binary_f1"]),
            _fmt(m["baseline_macro_f1"]),
        ]
    )
    lines = ["## Per-AU results (pooled over folds)", ""]
    if optimistic:
        lines += [f"**{OPTIMISTIC_NOTE}**", ""]
    if several:
        lines += ["Means ± sample std over seeds; counts are per seed (mean).", ""]
    return lines + _md_table(header, rows)


def _per_fold_section(tables: RunTables, optimistic: bool) -> list[str]:
    pf = tables.per_fold
    rows = []
    for fold in tables.summary["folds"]:
        part = pf[pf["fold"] == fold]
        per_seed = part.groupby("seed")
        clips = per_seed["n_clips"].first().mean()
        positives = per_seed["n_pos"].sum().mean()
        b_mean, b_n = M.nanmean_count(part["binary_f1"].to_numpy(dtype=float))
        m_mean, _ = M.nanmean_count(part["macro_f1"].to_numpy(dtype=float))
        n_cells = len(part)
        rows.append(
            [
                fold,
                f"{clips:g}",
                f"{positives:g}",
                f"{_fmt(b_mean)} ({b_n}/{n_cells})",
                _fmt(m_mean),
            ]
        )
    header = [
        "fold",
        "clips",
        "AU positives (all AUs)",
        "binary F1, mean over AUs (defined/total)",
        '"macro" F1, mean over AUs',
    ]
    lines = ["## Per-fold summary", ""]
    if optimistic:
        lines += [f"**{OPTIMISTIC_NOTE}**", ""]
    lines += [
        "Binary F1 is undefined for an AU in a fold without positive clips and without positive "
        "predictions; such cells are left out of the means.",
        "",
    ]
    if tables.summary["n_seeds"] > 1:
        lines += ["Values pool the (seed, AU) cells of each fold.", ""]
    return lines + _md_table(header, rows)


def _seeds_section(tables: RunTables, optimistic: bool) -> list[str]:
    s = tables.summary
    keys = ("pooled_binary_f1", "pooled_macro_f1", "fold_mean_binary_f1", "baseline_binary_f1")
    header = ["seed", "binary F1 pooled", '"macro" F1 pooled', "binary F1 fold mean", "baseline"]
    rows = [[seed, *(_fmt(v[k]) for k in keys)] for seed, v in s["per_seed"].items()]
    rows.append(["**mean ± std**", *(_fmt(s["metrics"][k], s["metrics_std"][k]) for k in keys)])
    lines = ["## Seeds", ""]
    if optimistic:
        lines += [f"**{OPTIMISTIC_NOTE}**", ""]
    return lines + _md_table(header, rows)


def _excluded_section(excluded_clips: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["## Excluded clips", ""]
    if not excluded_clips:
        return lines + ["None: every clip was preprocessed and evaluated."]
    first = ["dataset", "subject", "clip", "reason"]
    keys = [k for k in first if any(k in c for c in excluded_clips)]
    keys += [k for k in dict.fromkeys(k for c in excluded_clips for k in c) if k not in keys]
    lines += [f"{len(excluded_clips)} clips were left out (preprocessing failures):", ""]
    return lines + _md_table(keys, [[c.get(k, "") for k in keys] for c in excluded_clips])


def write_report(
    tables: RunTables,
    out_dir: Path,
    *,
    title: str,
    protocol: str,
    config_summary: dict,
    excluded_clips: list[dict],
    plots: list[Path],
    optimistic: bool,
    notes: list[str] | None = None,
) -> Path:
    """Write ``report.md``: the run in words and tables.

    Args:
        tables: Output of :func:`compute_tables`.
        out_dir: Folder of the report (created when missing); plot links are relative to it.
        title: Report title.
        protocol: Protocol name, e.g. ``loso`` or ``cross``.
        config_summary: Settings to list (nested dicts are flattened with dots). The threshold
            policy is read from ``eval.threshold`` (or ``threshold``) and ``eval.fixed_threshold``.
        excluded_clips: Clips left out before evaluation, each a dict with e.g. ``dataset,
            subject, clip, reason``.
        plots: PNG files to link (e.g. from :func:`write_plots`).
        optimistic: Thresholds were tuned on test labels; the note appears at the top and next
            to every table of numbers.
        notes: Extra remarks, one bullet each.

    Returns:
        The path of the written report.
    """
    out_dir = Path(out_dir)
    s = tables.summary
    lines = [f"# {title}", ""]
    if optimistic:
        lines += [
            f"> **{OPTIMISTIC_NOTE}.** Per-AU decision thresholds were chosen on the pooled test "
            "predictions (AU-LLM's reference protocol), so every thresholded number below "
            "overestimates performance on unseen data.",
            "",
        ]
    lines += [
        f"- Protocol: `{protocol}`; test datasets: {', '.join(s['datasets'])}",
        f"- AUs: {', '.join(f'AU{a}' for a in tables.aus)}",
        f"- Folds: {s['n_folds']}; test clips: {s['n_clips']}; excluded clips: "
        f"{len(excluded_clips)}",
        f"- Seeds: {', '.join(str(x) for x in s['seeds'])}",
        f"- Threshold policy: {_threshold_policy(config_summary, optimistic)}",
        "- Pooled metrics concatenate the test clips of all folds and compute each AU's metric "
        "once; fold means average per-fold metrics over the folds where they are defined.",
        "",
    ]
    lines += _headline_section(tables, optimistic) + [""]
    lines += _per_au_section(tables, optimistic) + [""]
    lines += _per_fold_section(tables, optimistic) + [""]
    if s["n_seeds"] > 1:
        lines += _seeds_section(tables, optimistic) + [""]
    lines += _excluded_section(excluded_clips) + [""]
    if plots:
        lines += ["## Plots", ""]
        for plot in plots:
            rel = Path(os.path.relpath(Path(plot), out_dir)).as_posix()
            lines += [f"![{Path(plot).stem}]({rel})", ""]
    if config_summary:
        lines += ["## Configuration", ""]
        lines += _md_table(
            ["setting", "value"], [[f"`{k}`", v] for k, v in _flatten(config_summary)]
        )
        lines += [""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


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


def write_metric_files(tables: RunTables, out_dir: Path, optimistic: bool) -> None:
    """Write the metric tables and ``summary.json`` (all atomically).

    Files: ``metrics_per_au.csv`` (per seed and AU), ``metrics_per_au_seed_mean.csv`` (per AU,
    mean and std over seeds), ``metrics_per_fold.csv`` and ``summary.json`` (nan written as null).

    Args:
        tables: Output of :func:`compute_tables`.
        out_dir: Folder for the files (created when missing).
        optimistic: Recorded as ``"optimistic"`` in summary.json, with ``"note"`` when true;
            every CSV then also gets a last column ``note`` holding :data:`OPTIMISTIC_NOTE`.
    """
    out_dir = Path(out_dir)
    for name, table in (
        ("metrics_per_au.csv", tables.per_au),
        ("metrics_per_au_seed_mean.csv", tables.per_au_mean),
        ("metrics_per_fold.csv", tables.per_fold),
    ):
        atomic_write_csv(out_dir / name, mark_optimistic(table) if optimistic else table)
    summary: dict[str, Any] = {"optimistic": bool(optimistic)}
    if optimistic:
        summary["note"] = OPTIMISTIC_NOTE
    summary.update(tables.summary)
    text = json.dumps(_json_safe(summary), indent=2, allow_nan=False)
    atomic_write_text(out_dir / "summary.json", text + "\n")


def headline_table(tables: RunTables, optimistic: bool = False) -> str:
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
    lines += [
        "binF1 = binary F1 (positive class); macroF1 = mean of pos./neg. class F1 (AU-LLM); "
        "alwaysPos = binary F1 of predicting every clip positive",
        header,
        "-" * len(header),
    ]
    for _, row in tables.per_au_mean.iterrows():
        lines.append(
            f"{'AU' + str(int(row['au'])):<6}{_fmt(row['binary_f1']):>8}"
            f"{_fmt(row['macro_f1']):>9}{_fmt(row['roc_auc']):>8}"
            f"{_fmt(row['baseline_binary_f1']):>11}{row['n_pos']:>7g}"
        )
    m = tables.summary["metrics"]
    lines.append("-" * len(header))
    lines.append(
        f"{'mean':<6}{_fmt(m['pooled_binary_f1']):>8}{_fmt(m['pooled_macro_f1']):>9}"
        f"{_fmt(m['pooled_roc_auc']):>8}{_fmt(m['baseline_binary_f1']):>11}"
    )
    if tables.summary["n_seeds"] > 1:
        lines.append(f"(means over {tables.summary['n_seeds']} seeds)")
    return "\n".join(lines)
