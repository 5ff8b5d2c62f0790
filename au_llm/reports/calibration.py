"""Binary F1 at thresholds chosen on the training predictions, beside the run's own decisions.

A model can rank clips well (high AUC) yet keep its negatives near the fixed 0.5 threshold; its
fixed-threshold F1 then understates it. Every fold records per-AU thresholds chosen on its own
training clips' predictions (``train_thresholds`` in ``folds/seed*/<fold>.json``; never on test
labels), and the report gives the F1 those thresholds reach on the test predictions beside the
run's F1, so calibration is not mistaken for what the model reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from au_llm.metrics import au_column, binary_f1


def fold_train_thresholds(run_dir: Path) -> dict[tuple[str, str], dict[str, float]]:
    """``(seed, fold) -> {AU: threshold}`` from the folds' records that have them."""
    found = {}
    for path in sorted(Path(run_dir).glob("folds/*/*.json")):
        record = json.loads(path.read_text())
        if "train_thresholds" in record:
            found[(str(record["seed"]), str(record["fold"]))] = record["train_thresholds"]
    return found


def train_threshold_f1(frame: pd.DataFrame, run_dir: Path, aus: Sequence[int]) -> float | None:
    """Mean over AUs (then seeds) of the pooled binary F1 at each fold's training thresholds.

    Args:
        frame: The run's predictions (``seed``, ``fold``, ``AUxx_prob``, ``AUxx_true``).
        run_dir: The run directory (its fold records hold the thresholds).
        aus: AU numbers.

    Returns:
        The F1, or None when a fold has no recorded training thresholds.
    """
    thresholds = fold_train_thresholds(run_dir)
    keys = list(zip(frame["seed"].astype(str), frame["fold"].astype(str), strict=True))
    if not keys or any(key not in thresholds for key in set(keys)):
        return None
    per_seed = []
    for _, rows in frame.groupby("seed"):
        row_keys = list(zip(rows["seed"].astype(str), rows["fold"].astype(str), strict=True))
        scores = []
        for au in aus:
            cut = np.array([thresholds[key][str(au)] for key in row_keys])
            preds = (rows[au_column(au, "prob")].to_numpy() >= cut).astype(int)
            scores.append(binary_f1(rows[au_column(au, "true")].to_numpy().astype(int), preds))
        per_seed.append(float(np.nanmean(scores)))
    return float(np.mean(per_seed))
