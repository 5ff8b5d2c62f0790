"""The vision head's metrics beside the main head's (``model.vision_head``).

A run whose model has a vision head writes its scores as ``AUxx_prob_vision`` and its decisions
(at the run's threshold policy, with the vision head's own training thresholds under ``train``)
as ``AUxx_pred_vision``. :func:`vision_frame` gives them the main head's column names, so the same
metric tables (:func:`~au_llm.reports.tables.compute_tables`) measure it; ``summary.json`` holds
the result as ``vision_head``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from au_llm.metrics import au_column
from au_llm.prediction_rows import VISION_SUFFIX
from au_llm.reports.tables import RunTables


def vision_frame(frame: pd.DataFrame, aus: Sequence[int]) -> pd.DataFrame | None:
    """The predictions with the vision head's columns in place of the main head's, or None.

    Args:
        frame: A run's predictions.
        aus: AU numbers.

    Returns:
        A copy whose ``AUxx_prob``/``AUxx_pred`` are the vision head's; None when the run has no
        vision columns.
    """
    renamed = {
        au_column(au, kind) + VISION_SUFFIX: au_column(au, kind)
        for au in aus
        for kind in ("prob", "pred")
    }
    if not set(renamed) <= set(frame.columns):
        return None
    return frame.drop(columns=list(renamed.values())).rename(columns=renamed)


def vision_summary(tables: RunTables) -> dict[str, Any]:
    """The run-level numbers of the vision head's tables (metrics, their std, per seed)."""
    return {key: tables.summary[key] for key in ("metrics", "metrics_std", "per_seed")}


def vision_notes(summary: dict[str, Any]) -> list[str]:
    """A report line on the vision head."""
    metrics = summary["metrics"]
    return [
        f"Vision head (on the visual token, beside the main head): pooled binary F1 "
        f"{metrics['pooled_binary_f1']:.3f}, ROC AUC {metrics['pooled_roc_auc']:.3f}."
    ]
