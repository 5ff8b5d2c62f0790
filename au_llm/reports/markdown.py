"""``report.md``: one run in words and tables."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from au_llm import metrics as M
from au_llm.io_utils import atomic_write_text
from au_llm.reports.tables import (
    OPTIMISTIC_NOTE,
    PUBLISHED_AU_LLM_MACRO_F1,
    RunTables,
    format_metric,
    normalise_dataset,
    partial_line,
    undefined_line,
)
from au_llm.runs.layout import REPORT


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
    policy = flat.get("eval.threshold_policy", flat.get("threshold"))
    if policy is None:
        policy = "test-oracle" if optimistic else "not recorded"
    text = f"`{policy}`"
    if policy == "fixed":
        fixed = flat.get("eval.fixed_threshold", flat.get("fixed_threshold"))
        text += f" (threshold {fixed})" if fixed is not None else ""
    elif policy == "train":
        text += " (per AU, chosen on the training clips' own predictions of each fold)"
    elif policy == "val":
        text += " (per AU, chosen on the predictions of each fold's inner validation subjects)"
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
        return f"{format_metric(m[key], sd[key])} ({s['n_aus_defined'][key]}/{n_aus} AUs)"

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
        f"{format_metric(m['pooled_binary_f1'], sd['pooled_binary_f1'])}**, against "
        f"{format_metric(m['baseline_binary_f1'])} for the always-positive baseline. "
        'The "macro" F1 (AU-LLM\'s convention) is '
        f"{format_metric(m['pooled_macro_f1'], sd['pooled_macro_f1'])}; the two "
        "conventions are not comparable with each other.",
        "",
    ]
    header = ["metric (mean over AUs)", "model", "always-positive baseline"]
    lines += _md_table(header, rows)
    datasets = [normalise_dataset(d) for d in s["datasets"]]
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
        return format_metric(row[key], row[f"{key}_std"] if several else None)

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
        folds = f"{format_metric(row['binary_f1_fold_mean'])} ({row['binary_f1_n_folds']:g}/"
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
                format_metric(row["baseline_binary_f1"]),
                format_metric(row["baseline_macro_f1"]),
            ]
        )
    m = tables.summary["metrics"]
    rows.append(
        [
            "**mean**",
            "",
            "",
            "",
            format_metric(m["pooled_binary_f1"]),
            format_metric(m["pooled_macro_f1"]),
            format_metric(m["pooled_precision"]),
            format_metric(m["pooled_recall"]),
            format_metric(m["pooled_roc_auc"]),
            format_metric(m["fold_mean_binary_f1"]),
            format_metric(m["baseline_binary_f1"]),
            format_metric(m["baseline_macro_f1"]),
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
                f"{format_metric(b_mean)} ({b_n}/{n_cells})",
                format_metric(m_mean),
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
        "Every metric of an AU is undefined (n/a) in a fold without a positive clip of it; such "
        "cells are left out of the means.",
        "",
    ]
    if tables.summary["n_seeds"] > 1:
        lines += ["Values pool the (seed, AU) cells of each fold.", ""]
    return lines + _md_table(header, rows)


def _seeds_section(tables: RunTables, optimistic: bool) -> list[str]:
    s = tables.summary
    keys = ("pooled_binary_f1", "pooled_macro_f1", "fold_mean_binary_f1", "baseline_binary_f1")
    header = ["seed", "binary F1 pooled", '"macro" F1 pooled', "binary F1 fold mean", "baseline"]
    rows = [[seed, *(format_metric(v[k]) for k in keys)] for seed, v in s["per_seed"].items()]
    rows.append(
        ["**mean ± std**", *(format_metric(s["metrics"][k], s["metrics_std"][k]) for k in keys)]
    )
    lines = ["## Seeds", ""]
    if optimistic:
        lines += [f"**{OPTIMISTIC_NOTE}**", ""]
    return lines + _md_table(header, rows)


def _partial_note(summary: Mapping[str, Any]) -> str:
    """`` (partial: N of M folds ...)`` after the fold count of a partial run, else ``""``."""
    return f" ({partial_line(summary['partial'])})" if summary.get("partial") else ""


def _excluded_section(excluded_clips: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["## Excluded clips", ""]
    if not excluded_clips:
        return lines + ["None: every clip was preprocessed and evaluated."]
    first = ["dataset", "subject", "clip", "reason"]
    keys = [k for k in first if any(k in c for c in excluded_clips)]
    keys += [k for k in dict.fromkeys(k for c in excluded_clips for k in c) if k not in keys]
    lines += [f"{len(excluded_clips)} clips were left out (preprocessing failures):", ""]
    return lines + _md_table(keys, [[c.get(k, "") for k in keys] for c in excluded_clips])


def write_markdown_report(
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
        tables: Output of :func:`~au_llm.reports.tables.compute_tables`.
        out_dir: Folder of the report (created when missing); plot links are relative to it.
        title: Report title.
        protocol: Protocol name, e.g. ``loso`` or ``cross``.
        config_summary: Settings to list (nested dicts are flattened with dots). The threshold
            policy is read from ``eval.threshold_policy`` (or ``threshold``) and
            ``eval.fixed_threshold``.
        excluded_clips: Clips left out before evaluation, each a dict with e.g. ``dataset,
            subject, clip, reason``.
        plots: PNG files to link (e.g. from :func:`~au_llm.reports.plots.write_plots`).
        optimistic: Thresholds were tuned on test labels; the note appears at the top and next
            to every table of numbers.
        notes: Extra remarks, one bullet each.

    Returns:
        The path of the written report.
    """
    out_dir = Path(out_dir)
    s = tables.summary
    lines = [f"# {title}", ""]
    if s.get("partial"):
        lines += [
            f"> **{partial_line(s['partial'])}.** The numbers cover the finished folds only.",
            "",
        ]
    undefined = undefined_line(s)
    for warning in [*s.get("warnings", []), *([undefined] if undefined else [])]:
        lines += [f"> **{warning}.**", ""]
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
        f"- Folds: {s['n_folds']}{_partial_note(s)}; test clips: {s['n_clips']}; "
        f"excluded clips: {len(excluded_clips)}",
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
    path = out_dir / REPORT
    atomic_write_text(path, "\n".join(lines))
    return path
