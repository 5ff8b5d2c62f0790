"""Binary F1 at thresholds chosen on the training predictions, beside the run's own decisions.

A model can rank clips well (high AUC) yet keep its negatives near the fixed 0.5 threshold; its
fixed-threshold F1 then understates it. Every fold records per-AU thresholds chosen on its own
training clips' predictions (``train_thresholds`` in its record; never on test labels), and the
report gives the F1 those thresholds reach on the test predictions beside the run's F1, so
calibration is not mistaken for what the model reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from au_llm.metrics import au_column, decision_metrics, known_rows, nanmean_count


def fold_train_thresholds(
    records: Sequence[dict[str, Any]],
) -> dict[tuple[str, str], dict[str, float]]:
    """``(seed, fold) -> {AU: threshold}`` from the fold records that have them."""
    return {
        (str(record["seed"]), str(record["fold"])): record["train_thresholds"]
        for record in records
        if "train_thresholds" in record
    }


def train_threshold_f1(
    frame: pd.DataFrame, records: Sequence[dict[str, Any]], aus: Sequence[int]
) -> float | None:
    """Mean over AUs (then seeds) of the pooled binary F1 at each fold's training thresholds.

    Args:
        frame: The run's predictions (``seed``, ``fold``, ``AUxx_prob``, ``AUxx_true``).
        records: The finished folds' records (:meth:`~au_llm.runs.run.Run.fold_records`),
            which hold the thresholds.
        aus: AU numbers.

    Returns:
        The F1 (nan when no AU is defined, see :func:`~au_llm.metrics.decision_metrics`), or
        None when a fold has no recorded training thresholds.
    """
    thresholds = fold_train_thresholds(records)
    keys = list(zip(frame["seed"].astype(str), frame["fold"].astype(str), strict=True))
    if not keys or any(key not in thresholds for key in set(keys)):
        return None
    per_seed = []
    for _, rows in frame.groupby("seed"):
        row_keys = list(zip(rows["seed"].astype(str), rows["fold"].astype(str), strict=True))
        scores = []
        for au in aus:
            cut = np.array([thresholds[key][str(au)] for key in row_keys])
            truth = rows[au_column(au, "true")].to_numpy(dtype=float)
            known = known_rows(truth)
            preds = (rows[au_column(au, "prob")].to_numpy() >= cut).astype(int)
            scores.append(decision_metrics(truth[known], preds[known])["binary_f1"])
        per_seed.append(nanmean_count(scores)[0])
    return nanmean_count(per_seed)[0]
