"""Every output of a run directory rebuilt from its finished folds.

A protocol run writes one predictions CSV per finished fold (see :mod:`au_llm.runs.layout`);
:func:`write_run_report` turns whatever folds are finished into ``predictions.csv``, the metric
files, the plots and ``report.md`` (``au-llm report``, :mod:`au_llm.recipes.report`, gives it
the run's settings). When some work items of the run's plan are not finished (a
``--shard``/``--folds`` run alone, or a run still going), the report, ``summary.json``
(``partial``) and the headline say "partial: N of M folds". Folds computed with different CPU
thread counts are refused (their probabilities differ slightly). Only the plan's folds that read
back whole are pooled (:mod:`au_llm.runs.folds`); folds set aside, fold files outside the plan,
datasets none of whose clips was left, and folds whose training clips had no known label of an
AU are named in ``summary.json``'s ``warnings``, at the top of ``report.md`` and in the headline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from au_llm.config import EvalConfig
from au_llm.io_utils import atomic_write_csv, atomic_write_text
from au_llm.metrics import apply_thresholds, au_column, best_thresholds, threshold_grid
from au_llm.protocols import PROTOCOLS
from au_llm.reliance import reliance_notes, run_reliance
from au_llm.reports.answers import answer_notes, answer_tables
from au_llm.reports.calibration import train_threshold_f1
from au_llm.reports.datasets import dataset_tables
from au_llm.reports.explanations import explanation_notes, explanation_tables
from au_llm.reports.markdown import write_markdown_report
from au_llm.reports.plots import write_plots
from au_llm.reports.tables import (
    OPTIMISTIC_NOTE,
    RunTables,
    compute_tables,
    headline_table,
    mark_optimistic,
    write_metric_files,
)
from au_llm.reports.vision import vision_frame, vision_notes, vision_summary
from au_llm.runs.folds import FoldScan
from au_llm.runs.layout import (
    METRICS_PER_DATASET,
    ORACLE_THRESHOLDS,
    PREDICTIONS,
    PREPROCESS_REPORT,
    SUMMARY,
    RunLayout,
)
from au_llm.runs.run import Item, Run


def fold_precisions(records: list[dict[str, Any]]) -> str:
    """The precision(s) finished folds ran in (``fp32``, ``bf16``, or both when mixed).

    Args:
        records: The finished folds' records (:meth:`Run.fold_records`).
    """
    seen = {record.get("precision", "fp32") for record in records}
    return ", ".join(sorted(seen)) + (" (mixed across folds)" if len(seen) > 1 else "")


def partial_info(frame: pd.DataFrame, expected: list[Item]) -> dict[str, Any] | None:
    """Finished vs expected (seed, fold) pairs when some are missing, else None.

    Returns:
        ``{"finished": N, "expected": M, "missing": ["seed<S>/<fold>", ...]}`` or None (all
        finished, or the plan is empty).
    """
    if not expected:
        return None
    done = set(zip(frame["seed"].astype(int), frame["fold"].astype(str), strict=True))
    missing = [f"seed{seed}/{fold}" for seed, fold in expected if (seed, fold) not in done]
    if not missing:
        return None
    return {"finished": len(expected) - len(missing), "expected": len(expected), "missing": missing}


def untrained_folds(records: list[dict[str, Any]], aus: list[int]) -> dict[int, list[Item]]:
    """Per AU, the folds whose training clips had no known label of it (never learnt there).

    Read from the ``train_labels`` of the fold records that have them.
    """
    untrained: dict[int, list[Item]] = {}
    for record in records:
        counts = record.get("train_labels", {})
        for au in aus:
            if str(au) in counts and counts[str(au)]["known"] == 0:
                untrained.setdefault(au, []).append((int(record["seed"]), str(record["fold"])))
    return untrained


def without_untrained(frame: pd.DataFrame, untrained: dict[int, list[Item]]) -> pd.DataFrame:
    """``frame`` with the labels of each AU made unknown in the folds that never learnt it."""
    frame = frame.copy()
    keys = pd.Series(list(zip(frame["seed"].astype(int), frame["fold"].astype(str), strict=True)))
    for au, items in untrained.items():
        frame.loc[keys.isin(items).to_numpy(), au_column(au, "true")] = np.nan
    return frame


def run_warnings(
    run: Run, scan: FoldScan, untrained: dict[int, list[Item]], n_folds: int, *, protocol: str
) -> list[str]:
    """The lines a reader must see first.

    Folds set aside or left out, datasets without a clip (under a protocol with a fold per
    dataset, the folds it cost), AUs some folds never learnt.
    """
    lines = scan.notes(run.root)
    lost = run.info().get("lost_datasets") or {}
    for dataset, n in lost.items():
        line = (
            f"dataset {dataset}: all {n} of its clips failed preprocessing "
            f"({PREPROCESS_REPORT}); the run holds none of its clips"
        )
        if PROTOCOLS[protocol].per_dataset:
            line += f", so it has {n_folds} folds, not {n_folds + len(lost)}"
        lines.append(line)
    for au, items in sorted(untrained.items()):
        folds = ", ".join(f"seed{seed}/{fold}" for seed, fold in items)
        lines.append(
            f"AU{au}: no known label among the training clips of {folds}; those folds never "
            f"learnt it, so their test clips are left out of AU{au}'s metrics"
        )
    return lines


def apply_oracle_thresholds(
    frame: pd.DataFrame, aus: list[int], grid: np.ndarray
) -> tuple[pd.DataFrame, dict[str, list[float]]]:
    """Re-threshold each seed's pooled test predictions per AU on the test labels (optimistic).

    Returns:
        The re-thresholded predictions and the thresholds per seed (in ``aus`` order).
    """
    frame = frame.copy()
    probs = [au_column(au, "prob") for au in aus]
    trues = [au_column(au, "true") for au in aus]
    preds = [au_column(au, "pred") for au in aus]
    chosen = {}
    for seed, rows in frame.groupby("seed"):
        scores = rows[probs].to_numpy()
        thresholds = best_thresholds(rows[trues].to_numpy(), scores, grid)
        frame.loc[rows.index, preds] = apply_thresholds(scores, thresholds)
        chosen[str(seed)] = [float(t) for t in thresholds]
    return frame, chosen


def write_run_report(
    run: Run, *, title: str, protocol: str, evaluation: EvalConfig, settings: dict[str, str]
) -> RunTables:
    """Rebuild predictions.csv, metric tables, plots and report.md from the finished folds.

    Under ``eval.threshold_policy: test-oracle`` the decisions are re-made with thresholds tuned
    on the pooled test labels; every file then says so (a ``note`` column in each CSV,
    ``optimistic`` in summary.json, plot titles, report.md) and ``oracle_thresholds.json``
    records the thresholds.

    Args:
        run: The run folder.
        title: The report's title.
        protocol: The run's protocol (a name of :data:`~au_llm.protocols.PROTOCOLS`).
        evaluation: The run's ``eval`` section (threshold policy and grid).
        settings: The settings ``report.md`` lists (the fold precisions are added).

    Raises:
        FileNotFoundError: No fold of the run is finished.
        ValueError: Finished folds were computed with different CPU thread counts.
    """
    run_dir, run_info = run.root, run.info()
    aus = run.aus()
    scan = run.scan_folds()
    if not scan.whole:
        raise FileNotFoundError(" ".join([f"{run_dir}: no finished fold.", *scan.notes(run_dir)]))
    run.check_threads(items=scan.whole)
    records = run.fold_records(scan.whole)
    untrained = untrained_folds(records, aus)
    frame = run.finished_predictions(scan.whole)
    optimistic = evaluation.threshold_policy == "test-oracle"
    if optimistic:
        frame, chosen = apply_oracle_thresholds(
            frame, aus, threshold_grid(*evaluation.threshold_grid)
        )
        oracle = {"note": OPTIMISTIC_NOTE, "aus": aus, "thresholds_per_seed": chosen}
        atomic_write_text(run.layout.output(ORACLE_THRESHOLDS), json.dumps(oracle, indent=2))
    written, frame = frame, without_untrained(frame, untrained)
    tables = compute_tables(frame, aus)
    vision = vision_frame(frame, aus)
    if vision is not None:
        if optimistic:
            vision, _ = apply_oracle_thresholds(
                vision, aus, threshold_grid(*evaluation.threshold_grid)
            )
        tables.summary["vision_head"] = vision_summary(compute_tables(vision, aus))
    text_per_au, text_summary = answer_tables(frame, aus)
    notes = vision_notes(tables.summary["vision_head"]) if vision is not None else []
    if text_summary:
        tables.summary["text_answers"] = text_summary
        notes += answer_notes(text_summary, tables.summary["metrics"].get("pooled_binary_f1"))
    explain_per_au, explain_summary = explanation_tables(frame, aus)
    if explain_summary:
        tables.summary["explanations"] = explain_summary
        notes += explanation_notes(explain_summary)
        text_per_au = pd.concat([text_per_au, explain_per_au], ignore_index=True)
    tables.summary["precision"] = fold_precisions(records)
    tables.summary["metrics"]["binary_f1_train_threshold"] = train_threshold_f1(frame, records, aus)
    reliance = run_reliance(records)
    if reliance:
        tables.summary["reliance"] = reliance
        notes += reliance_notes(reliance)
    partial = partial_info(frame, run.plan())
    if partial is not None:
        tables.summary["partial"] = partial
    n_folds = len(run_info["folds"])
    tables.summary["warnings"] = run_warnings(run, scan, untrained, n_folds, protocol=protocol)
    datasets = sorted(frame["dataset"].unique())
    if len(datasets) > 1:
        per_dataset, tables.summary["per_dataset"] = dataset_tables(frame, aus)
        atomic_write_csv(run.layout.output(METRICS_PER_DATASET), per_dataset)
    predictions = mark_optimistic(written) if optimistic else written
    atomic_write_csv(run.layout.output(PREDICTIONS), predictions)
    write_metric_files(tables, run_dir, optimistic=optimistic, text_per_au=text_per_au)
    plots = write_plots(
        tables, run_dir, datasets[0] if len(datasets) == 1 else None, optimistic=optimistic
    )
    write_markdown_report(
        tables,
        run_dir,
        title=title,
        protocol=protocol,
        config_summary={**settings, "precision": tables.summary["precision"]},
        excluded_clips=run_info["excluded"],
        plots=plots,
        optimistic=optimistic,
        notes=notes,
    )
    return tables


def headline_text(run_dir: Path, tables: RunTables) -> str:
    """Text for the end of a run (printed by the caller): the run directory and headline table."""
    optimistic = json.loads(RunLayout(Path(run_dir)).output(SUMMARY).read_text())["optimistic"]
    return f"Run directory: {run_dir}\n{headline_table(tables, optimistic=optimistic)}"
