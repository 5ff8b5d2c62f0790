"""Named AU sets and unknown labels: manifest -> labels -> losses -> metrics -> tables."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch

from au_llm import metrics as M
from au_llm.data.au_sets import (
    COMPOSITE_AUS,
    DATASET_AU_SETS,
    unknown_aus_column,
    unknown_positives,
)
from au_llm.data.manifest import au_label_matrix
from au_llm.losses import (
    AsymmetricLoss,
    FocalLoss,
    WeightedBCELoss,
    build_loss,
    positive_weights,
)
from au_llm.prepare import warn_unknown_positives
from au_llm.reports.tables import compute_tables
from tests.tolerance import assert_as_accurate


def test_sets_follow_meb() -> None:
    assert COMPOSITE_AUS == (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17)
    assert DATASET_AU_SETS["casme"] == (1, 4, 9, 14)
    assert DATASET_AU_SETS["samm"] == (2, 4, 7, 12)


def test_uncoded_aus_become_nan_labels() -> None:
    frame = pd.DataFrame(
        {
            "dataset": ["samm", "casme2", "custom"],
            "clip": ["a", "b", "c"],
            "aus": ["1+4", "1+4", "1"],
        }
    )
    frame["aus_unknown"] = unknown_aus_column(frame, [1, 4, 9])
    assert frame["aus_unknown"].tolist() == ["1+9", "9", ""]
    labels = au_label_matrix(frame, [1, 4, 9])
    expected = np.array([[np.nan, 1, np.nan], [1, 1, np.nan], [1, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(labels, expected)


def test_coded_positives_made_unknown_are_counted_and_warned(caplog) -> None:
    """SAMM codes AU1 in clip a; under the unknown rule it is no positive: the run says so."""
    frame = pd.DataFrame(
        {"dataset": ["samm", "samm", "casme2"], "clip": ["a", "b", "c"], "aus": ["1+4", "1", "5"]}
    )
    assert unknown_positives(frame, [1, 4, 9]) == {("samm", 1): 2}
    with caplog.at_level("WARNING", logger="au_llm.prepare"):
        warn_unknown_positives(frame, [1, 4, 5])
    assert (
        "data.uncoded_aus=unknown: 3 coded positive labels lie outside their dataset's AU set "
        "and are unknown, not positive: casme2 AU5 (1 clips), samm AU1 (2 clips)"
    ) in caplog.text


WEIGHTS = torch.tensor([2.0, 0.5])
LOSSES = {
    "asl": lambda weight, reduction: AsymmetricLoss(reduction=reduction),
    "focal": lambda weight, reduction: FocalLoss(reduction=reduction),
    "bce": lambda weight, reduction: WeightedBCELoss(weight, reduction=reduction),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_losses_skip_unknown_targets(name: str, reduction: str) -> None:
    make = LOSSES[name]
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.1], [-0.5, 0.7]])
    targets = torch.tensor([[1.0, float("nan")], [0.0, 1.0], [float("nan"), float("nan")]])
    got = make(WEIGHTS, reduction)(logits, targets)
    known = [(i, j) for i in range(3) for j in range(2) if not torch.isnan(targets[i, j])]

    def known_only(weights: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The loss as the sum or mean of the known targets' losses, each computed alone."""
        terms = torch.stack(
            [
                make(weights[j : j + 1], "sum")(
                    logits[i : i + 1, j : j + 1], targets[i : i + 1, j : j + 1].to(logits.dtype)
                )
                for i, j in known
            ]
        )
        return terms.mean() if reduction == "mean" else terms.sum()

    expected = known_only(WEIGHTS, logits)
    exact = known_only(WEIGHTS.double(), logits.double())
    assert_as_accurate(got, expected, exact, terms=len(known), name=f"{name} {reduction}")
    plain = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    reference = make(WEIGHTS, reduction)(logits, plain)
    assert float(reference) != pytest.approx(float(got))


def test_positive_weights_count_known_labels_only() -> None:
    labels = np.array([[1, np.nan], [0, 1], [0, np.nan], [np.nan, 0]], dtype=np.float32)
    np.testing.assert_allclose(positive_weights(labels).numpy(), [2.0, 1.0])
    assert isinstance(build_loss(labels, kind="bce"), WeightedBCELoss)


def test_metrics_leave_unknown_clips_out() -> None:
    y = np.array([[1, np.nan], [0, 1], [1, 0], [np.nan, 1], [0, np.nan]], dtype=float)
    probs = np.array([[0.9, 0.9], [0.2, 0.8], [0.4, 0.6], [0.9, 0.1], [0.7, 0.9]])
    preds = (probs >= 0.5).astype(int)
    rows = M.per_au_metrics(y, probs, preds, [1, 2])
    for a, row in enumerate(rows):
        known = ~np.isnan(y[:, a])
        plain = M.au_metrics(y[known, a].astype(int), probs[known, a], preds[known, a])
        assert row["n_clips"] == int(known.sum())
        for key in ("binary_f1", "macro_f1", "tp", "fp", "fn", "tn"):
            assert row[key] == pytest.approx(plain[key], nan_ok=True)
    base = M.always_positive_metrics(y, [1, 2])
    assert base[1]["binary_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1))
    chosen = M.best_thresholds(y, probs, np.array([0.3, 0.5, 0.8]))
    known = ~np.isnan(y[:, 0])
    assert (
        chosen[0]
        == M.best_thresholds(y[known][:, :1], probs[known][:, :1], np.array([0.3, 0.5, 0.8]))[0]
    )


def test_prediction_tables_read_unknown_labels_back() -> None:
    y = np.array([[1, np.nan], [0, 1], [1, 0], [0, 1]], dtype=float)
    probs = np.array([[0.9, 0.9], [0.2, 0.8], [0.4, 0.6], [0.7, 0.1]])
    keys = pd.DataFrame(
        {
            "dataset": "d",
            "subject": ["s1", "s1", "s2", "s2"],
            "clip": list("abcd"),
            "fold": ["s1", "s1", "s2", "s2"],
            "seed": 0,
        }
    )
    frame = keys.assign(**M.au_prediction_columns([1, 2], probs, 0.5, y))
    text = io.StringIO()
    frame.to_csv(text, index=False)
    text.seek(0)
    back = pd.read_csv(text, dtype=str, keep_default_na=False)
    assert back[M.au_column(2, "true")].tolist() == ["", "1.0", "0.0", "1.0"]
    per_au = compute_tables(back, [1, 2]).per_au.set_index("au")
    assert per_au.loc[2, "n_clips"] == 3
    assert per_au.loc[1, "n_clips"] == 4
    bad = back.copy()
    bad.loc[0, M.au_column(2, "true")] = "x"
    with pytest.raises(ValueError, match="AU02_true = 'x'"):
        compute_tables(bad, [1, 2])
