"""A small predictions table shared by the report tests."""

from __future__ import annotations

import pandas as pd

AUS = [1, 12]


def predictions_frame(seed: int = 1, flip: int | None = None) -> pd.DataFrame:
    """Two LOSO folds (s1: 3 clips, s2: 4 clips), AUs 1 and 12; AU12 has no positive in s1."""
    true1 = [1, 0, 1, 1, 0, 0, 1]
    prob1 = [0.9, 0.4, 0.3, 0.8, 0.6, 0.1, 0.7]
    true12 = [0, 0, 0, 1, 0, 1, 0]
    prob12 = [0.2, 0.1, 0.3, 0.9, 0.2, 0.4, 0.1]
    # Decisions deliberately differ from prob >= 0.5 in one place (row 2 of AU12): the table must
    # use them as given.
    pred1 = [1, 0, 0, 1, 1, 0, 1]
    pred12 = [0, 0, 0, 1, 0, 0, 1]
    if flip is not None:
        pred1[flip] = 1 - pred1[flip]
    subjects = ["s1"] * 3 + ["s2"] * 4
    return pd.DataFrame(
        {
            "dataset": "casme2",
            "subject": subjects,
            "clip": [f"c{i}" for i in range(7)],
            "fold": subjects,
            "seed": seed,
            "AU01_prob": prob1,
            "AU01_pred": pred1,
            "AU01_true": true1,
            "AU12_prob": prob12,
            "AU12_pred": pred12,
            "AU12_true": true12,
        }
    )
