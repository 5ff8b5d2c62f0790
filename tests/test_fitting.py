"""The inner validation split of a fold's training subjects and the thresholds chosen on it."""

import numpy as np
import pytest

from au_llm.data.manifest import read_manifest
from au_llm.fitting import inner_split, validation_thresholds
from au_llm.metrics import best_thresholds


def test_inner_split_holds_out_whole_training_subjects(tiny_data):
    manifest = read_manifest(tiny_data.casme2)
    train, val = inner_split(manifest, 0.34, seed=3)
    assert len(val) and len(train)
    assert not set(train["subject"]) & set(val["subject"])
    assert len(train) + len(val) == len(manifest)
    train, val = inner_split(manifest, 0.99, seed=3)
    assert train["subject"].nunique() == 1
    one = manifest[manifest["subject"] == manifest["subject"].iloc[0]]
    with pytest.raises(ValueError, match="at least 2 training subjects"):
        inner_split(one, 0.5, seed=0)


def test_validation_thresholds_maximise_f1_and_keep_fixed_without_a_positive():
    labels = np.array([[1, 0, np.nan], [1, 0, 0], [0, 0, 0], [0, 0, 1]], dtype=float)
    probs = np.array([[0.9, 0.7, 0.2], [0.45, 0.2, 0.3], [0.3, 0.1, 0.9], [0.1, 0.6, 0.4]])
    grid = np.array([0.2, 0.3, 0.4, 0.5, 0.8])
    chosen = validation_thresholds(labels, probs, grid, fixed=0.5)
    # AU 0: only 0.4 separates the positives (0.9, 0.45) from the negatives (0.3, 0.1).
    assert chosen[0] == 0.4
    # AU 1 has no positive: the best F1 is any threshold above its scores, not a measurement.
    assert best_thresholds(labels, probs, grid)[1] == 0.8
    assert chosen[1] == 0.5
    # AU 2: the unknown label (score 0.2) is left out; 0.4 keeps the positive (0.4) and one
    # negative (0.9): F1 2/3, against 1/2 at 0.2 and 0.3 and 0 above 0.4.
    assert chosen[2] == 0.4
