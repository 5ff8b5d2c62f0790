"""Per-dataset metrics of a run over several datasets (``lodo``, LOSO over several manifests).

Each dataset's clips are scored on their own, exactly as a whole run is
(:func:`~au_llm.reports.tables.compute_tables`): F1 pooled over the dataset's clips per AU and
seed, in both conventions, then mean and std over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from au_llm.reports.tables import compute_tables

DATASET_KEYS = ("pooled_binary_f1", "pooled_macro_f1", "baseline_binary_f1")


def dataset_tables(
    predictions: pd.DataFrame, aus: Sequence[int]
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Metrics of each dataset of a predictions table.

    Args:
        predictions: A run's predictions (``dataset`` column and ``AUxx_*`` columns).
        aus: AU numbers.

    Returns:
        ``(per_au, summary)``: the per-AU table of every dataset (a ``dataset`` column first), and
        per dataset the mean and std over seeds of :data:`DATASET_KEYS` and its clip count.
    """
    tables, summary = [], {}
    for dataset in sorted(predictions["dataset"].astype(str).unique()):
        rows = predictions[predictions["dataset"].astype(str) == dataset]
        result = compute_tables(rows, aus)
        tables.append(result.per_au.assign(dataset=dataset))
        metrics, spread = result.summary["metrics"], result.summary["metrics_std"]
        summary[dataset] = {
            "n_clips": int(rows[["subject", "clip"]].drop_duplicates().shape[0]),
            **{key: metrics.get(key) for key in DATASET_KEYS},
            **{f"{key}_std": spread.get(key) for key in DATASET_KEYS},
        }
    per_au = pd.concat(tables, ignore_index=True)
    return per_au[["dataset", *[c for c in per_au.columns if c != "dataset"]]], summary
