"""Metrics of the LLM's text answers (``answer_<format>`` columns of predictions.csv).

Each answer is parsed strictly (:func:`au_llm.answers.parse_answer`); an answer that does not
parse counts as "no AU present" and is counted as a parse failure. Rows are labelled
``head = text:<format>`` so they sit beside the linear head's rows in ``metrics_per_au.csv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from au_llm.answers import ANSWER_FORMATS, decisions, parse_answer
from au_llm.metrics import au_column, decision_metrics, known_rows, nanmean_count
from au_llm.reports.tables import format_metric

ANSWER_PREFIX = "answer_"


def answer_formats(frame: pd.DataFrame) -> list[str]:
    """The formats that have an ``answer_<format>`` column in ``frame``, in canonical order."""
    return [fmt for fmt in ANSWER_FORMATS if f"{ANSWER_PREFIX}{fmt}" in frame.columns]


def answer_tables(frame: pd.DataFrame, aus: Sequence[int]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-AU metrics of every format's parsed answers, pooled over all rows (all seeds).

    Args:
        frame: Predictions with ``AUxx_true`` and ``answer_<format>`` columns.
        aus: AU numbers.

    Returns:
        ``(per_au, summary)``: one row per (format, AU) with ``head, au, binary_f1, macro_f1,
        precision, recall, n_clips, parse_failures``; and per format ``{"mean_binary_f1",
        "mean_macro_f1", "parse_failures", "n_answers", "parse_rate", "distinct_answers"}``.
    """
    y_true = frame[[au_column(au, "true") for au in aus]].to_numpy(dtype=float)
    rows, summary = [], {}
    for fmt in answer_formats(frame):
        texts = frame[f"{ANSWER_PREFIX}{fmt}"].fillna("").astype(str).tolist()
        parsed = [parse_answer(fmt, aus, text) for text in texts]
        preds = np.asarray(decisions(parsed, aus), dtype=int).reshape(len(texts), len(aus))
        failures = sum(not p.ok for p in parsed)
        per_au = []
        for j, au in enumerate(aus):
            known = known_rows(y_true[:, j])
            truth, pred = y_true[known, j].astype(int), preds[known, j]
            per_au.append(
                {
                    "head": f"text:{fmt}",
                    "au": int(au),
                    **decision_metrics(truth, pred),
                    "n_clips": len(texts),
                    "parse_failures": failures,
                }
            )
        rows.extend(per_au)
        summary[fmt] = {
            "mean_binary_f1": nanmean_count(r["binary_f1"] for r in per_au)[0],
            "mean_macro_f1": nanmean_count(r["macro_f1"] for r in per_au)[0],
            "parse_failures": failures,
            "n_answers": len(texts),
            "parse_rate": 1.0 - failures / max(1, len(texts)),
            "distinct_answers": len(set(texts)),
        }
    return pd.DataFrame(rows), summary


def answer_notes(summary: dict[str, Any], linear_f1: float | None) -> list[str]:
    """Report lines comparing each text format with the linear head."""
    lines = []
    if linear_f1 is not None:
        lines.append(f"Linear head: mean binary F1 {format_metric(linear_f1)} (pooled).")
    for fmt, values in summary.items():
        lines.append(
            f"Text answers, format `{fmt}`: mean binary F1 "
            f"{format_metric(values['mean_binary_f1'])}; "
            f"parse failures: {values['parse_failures']} of {values['n_answers']}; "
            f"{values['distinct_answers']} distinct answers "
            "(failed answers count as no AU present)."
        )
    return lines
