import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from au_llm.reports.paired import paired_difference, subject_metrics


def _frame(units: dict[tuple[int, str], tuple[list[int], list[int], list[float]]]) -> pd.DataFrame:
    """Predictions of AU1: (seed, subject) -> (labels, decisions, probabilities)."""
    rows = []
    for (seed, subject), (truth, pred, prob) in units.items():
        for i, (t, d, p) in enumerate(zip(truth, pred, prob, strict=True)):
            rows.append(
                {
                    "dataset": "casme2",
                    "subject": subject,
                    "clip": f"c{i}",
                    "fold": subject,
                    "seed": seed,
                    "AU01_prob": p,
                    "AU01_pred": d,
                    "AU01_true": t,
                }
            )
    return pd.DataFrame(rows)


def test_subject_metrics_are_the_per_subject_f1_and_auc_computed_by_hand():
    frame = _frame(
        {
            (1, "s1"): ([1, 1, 0, 0], [1, 0, 0, 0], [0.9, 0.4, 0.3, 0.1]),
            (1, "s2"): ([1, 0, 0, 0], [1, 1, 0, 0], [0.6, 0.7, 0.2, 0.1]),
            (1, "s3"): ([0, 0, 0, 0], [0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4]),
        }
    )
    units = subject_metrics(frame, [1])
    assert units["subject"].tolist() == ["s1", "s2", "s3"]
    # s1: TP 1, FN 1 -> 2/3; AUC 1 (both positives above both negatives).
    # s2: TP 1, FP 1 -> 2/3; AUC 2/3 (the positive beats 2 of 3 negatives).
    # s3: no positive label and no positive decision: F1 and AUC undefined.
    assert units["binary_f1"].tolist()[:2] == pytest.approx([2 / 3, 2 / 3])
    assert units["roc_auc"].tolist()[:2] == pytest.approx([1.0, 2 / 3])
    assert np.isnan(units["binary_f1"][2]) and np.isnan(units["roc_auc"][2])


def test_the_interval_comes_from_paired_differences_not_from_two_spreads():
    # Subjects differ widely; the setting is better by exactly 0.25 on each of them.
    reference, setting = {}, {}
    positives = {"s1": 1, "s2": 2, "s3": 3, "s4": 4}
    for subject, n_pos in positives.items():
        truth = [1] * 4 + [0] * 4
        hits = [1] * n_pos + [0] * (4 - n_pos)
        reference[(1, subject)] = (truth, hits + [0] * 4, [0.5] * 8)
        better = [1] * min(n_pos + 1, 4) + [0] * (4 - min(n_pos + 1, 4))
        setting[(1, subject)] = (truth, better + [0] * 4, [0.5] * 8)
    ref = subject_metrics(_frame(reference), [1])
    arm = subject_metrics(_frame(setting), [1])
    diffs = arm["binary_f1"] - ref["binary_f1"]
    assert ref["binary_f1"].max() - ref["binary_f1"].min() > 0.4  # unpaired spread is wide
    result = paired_difference(ref, arm, "binary_f1", n_boot=2000)
    assert result.mean == pytest.approx(diffs.mean())
    assert result.low <= result.mean <= result.high
    assert result.low > 0  # every subject improves: the paired interval excludes 0
    assert result.n_subjects == 4 and result.n_units == 4 and result.n_undefined == 0
    assert result.p_wilcoxon == pytest.approx(wilcoxon(diffs.to_numpy()).pvalue)


def test_a_constant_difference_has_a_point_interval_and_identical_runs_differ_by_zero():
    truth = [1, 1, 0, 0]
    ref = subject_metrics(
        _frame(
            {
                (s, f"s{i}"): (truth, [1, 0, 0, 0], [0.9, 0.1, 0.4, 0.2])
                for s in (1, 2)
                for i in range(3)
            }
        ),
        [1],
    )
    same = paired_difference(ref, ref.copy(), "roc_auc", n_boot=200)
    assert (same.mean, same.low, same.high, same.p_wilcoxon) == (0.0, 0.0, 0.0, None)
    shifted = ref.assign(binary_f1=ref["binary_f1"] + 0.1)
    result = paired_difference(ref, shifted, "binary_f1", n_boot=200)
    assert result.low == pytest.approx(0.1) and result.high == pytest.approx(0.1)
    assert result.n_units == 6 and result.n_subjects == 3


def test_seeds_of_a_subject_are_resampled_inside_it():
    # Subject s1 gains 0.2 under seed 1 and 0 under seed 2; s2 gains 0.1 under both.
    ref = pd.DataFrame(
        {
            "seed": [1, 1, 2, 2],
            "dataset": ["d"] * 4,
            "subject": ["s1", "s2", "s1", "s2"],
            "n_clips": [4] * 4,
            "binary_f1": [0.5] * 4,
            "roc_auc": [0.5] * 4,
        }
    ).sort_values(["seed", "dataset", "subject"])
    arm = ref.assign(binary_f1=ref["binary_f1"] + np.array([0.2, 0.1, 0.0, 0.1]))
    result = paired_difference(ref, arm, "binary_f1", n_boot=4000, seed=3)
    assert result.mean == pytest.approx(0.1)
    assert 0.0 <= result.low < 0.1 < result.high <= 0.2
    assert result.n_subjects == 2 and result.n_units == 4


def test_units_undefined_in_either_run_are_left_out_and_counted():
    ref = pd.DataFrame(
        {
            "seed": [1, 1, 1],
            "dataset": ["d"] * 3,
            "subject": ["a", "b", "c"],
            "n_clips": [2, 2, 2],
            "binary_f1": [0.4, np.nan, 0.6],
            "roc_auc": [0.5, 0.5, 0.5],
        }
    )
    arm = ref.assign(binary_f1=[0.5, 0.3, np.nan])
    result = paired_difference(ref, arm, "binary_f1", n_boot=100)
    assert result.n_units == 1 and result.n_undefined == 2
    assert result.mean == pytest.approx(0.1)


def test_runs_on_other_units_are_not_paired():
    ref = subject_metrics(_frame({(1, "s1"): ([1, 0], [1, 0], [0.9, 0.1])}), [1])
    other = subject_metrics(_frame({(1, "s2"): ([1, 0], [1, 0], [0.9, 0.1])}), [1])
    with pytest.raises(ValueError, match="not paired"):
        paired_difference(ref, other, "binary_f1")
    with pytest.raises(ValueError, match="metric"):
        paired_difference(ref, ref, "accuracy")
