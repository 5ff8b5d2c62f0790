import itertools
import math

import numpy as np
import pytest

from au_llm import metrics as M


def test_f1_precision_recall_hand_computed():
    y_true = [1, 1, 0, 0, 1]
    y_pred = [1, 0, 1, 0, 1]
    # TP = idx 0, 4 -> 2; FP = idx 2 -> 1; FN = idx 1 -> 1; TN = idx 3 -> 1.
    assert M.confusion_counts(y_true, y_pred) == (2, 1, 1, 1)
    assert M.binary_f1(y_true, y_pred) == pytest.approx(4 / 6)  # 2TP / (2TP + FP + FN)
    assert M.precision(y_true, y_pred) == pytest.approx(2 / 3)
    assert M.recall(y_true, y_pred) == pytest.approx(2 / 3)
    # Negative class: its "TP" is TN = 1, its "FP" is FN = 1, its "FN" is FP = 1 -> 2/4 = 0.5.
    assert M.macro_f1(y_true, y_pred) == pytest.approx((4 / 6 + 0.5) / 2)


def test_f1_asymmetric_case():
    y_true = [1, 1, 1, 0, 0, 0, 0, 0]
    y_pred = [1, 0, 0, 1, 1, 0, 0, 0]
    # TP 1, FN 2, FP 2, TN 3. Positive F1 = 2/(2+2+2) = 1/3; negative F1 = 6/(6+2+2) = 0.6.
    assert M.binary_f1(y_true, y_pred) == pytest.approx(1 / 3)
    assert M.macro_f1(y_true, y_pred) == pytest.approx((1 / 3 + 0.6) / 2)
    assert M.precision(y_true, y_pred) == pytest.approx(1 / 3)
    assert M.recall(y_true, y_pred) == pytest.approx(1 / 3)


def test_degenerate_no_positives_and_no_predicted_positives():
    y = [0, 0, 0]
    # TP + FP + FN = 0: binary F1 undefined; only the negative class has an F1 (= 1).
    assert math.isnan(M.binary_f1(y, y))
    assert M.macro_f1(y, y) == 1.0
    assert math.isnan(M.precision(y, y))
    assert math.isnan(M.recall(y, y))


def test_degenerate_no_positives_but_false_alarm():
    y_true, y_pred = [0, 0, 0], [1, 0, 0]
    # TP 0, FP 1, FN 0 -> binary F1 0 (defined); negative class TN 2, FN 0, FP 1 -> 4/5.
    assert M.binary_f1(y_true, y_pred) == 0.0
    assert M.macro_f1(y_true, y_pred) == pytest.approx(0.4)
    assert M.precision(y_true, y_pred) == 0.0
    assert math.isnan(M.recall(y_true, y_pred))


def test_degenerate_all_positive_and_empty():
    assert M.binary_f1([1, 1], [1, 1]) == 1.0
    assert M.macro_f1([1, 1], [1, 1]) == 1.0  # negative class absent: left out
    assert M.binary_f1([1, 1], [0, 0]) == 0.0
    assert math.isnan(M.binary_f1([], []))
    assert math.isnan(M.macro_f1([], []))


def test_invalid_labels_and_shapes():
    with pytest.raises(ValueError, match="0/1"):
        M.binary_f1([0, 2], [0, 1])
    with pytest.raises(ValueError, match="shape"):
        M.binary_f1([0, 1, 1], [0, 1])


def test_roc_auc_hand_computed():
    # Positives 0.35, 0.8; negatives 0.1, 0.4. Pairs won: (0.35>0.1), (0.8>0.1), (0.8>0.4) = 3/4.
    assert M.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_roc_auc_ties_count_half():
    # Positives 0.5, 0.9; negatives 0.5, 0.2. 0.5 vs 0.5 tie (0.5), 0.5>0.2, 0.9>0.5, 0.9>0.2.
    assert M.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(3.5 / 4)
    assert M.roc_auc([0, 1, 1, 0], [0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.5)
    assert M.roc_auc([0, 0, 1], [0.9, 0.8, 0.1]) == 0.0


def test_roc_auc_matches_pairwise_count_with_many_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    s = rng.integers(0, 5, 60) / 4  # heavy ties
    pos, neg = s[y == 1], s[y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg))
    assert M.roc_auc(y, s) == pytest.approx(wins / (len(pos) * len(neg)))


def test_roc_auc_one_class_is_nan():
    assert math.isnan(M.roc_auc([1, 1], [0.2, 0.3]))
    assert math.isnan(M.roc_auc([0, 0], [0.2, 0.3]))


def test_au_column_names():
    assert M.au_column(1, "prob") == "AU01_prob"
    assert M.au_column(12, "true") == "AU12_true"
    with pytest.raises(ValueError, match="kind"):
        M.au_column(1, "score")
    with pytest.raises(ValueError, match="AU"):
        M.au_column(0, "prob")


def test_parse_au_columns():
    cols = ["dataset", "AU12_prob", "AU12_pred", "AU12_true", "AU01_true", "AU01_pred", "AU01_prob"]
    assert M.parse_au_columns(cols) == [1, 12]
    with pytest.raises(ValueError, match="AU04_pred"):
        M.parse_au_columns([*cols, "AU04_prob", "AU04_true"])


def test_threshold_grid_paper_range():
    grid = M.threshold_grid(0.10, 0.85, 0.05)
    assert len(grid) == 16
    assert grid[0] == 0.10 and grid[-1] == 0.85
    assert 0.3 in grid  # 0.1 + 4 * 0.05 is 0.30000000000000004 without rounding
    assert np.allclose(np.diff(grid), 0.05)
    assert len(M.threshold_grid(0.5, 0.5, 0.1)) == 1
    with pytest.raises(ValueError):
        M.threshold_grid(0.1, 0.9, 0.0)


def test_apply_thresholds_is_inclusive():
    probs = np.array([[0.5, 0.2], [0.49, 0.3]])
    assert M.apply_thresholds(probs, np.array([0.5, 0.3])).tolist() == [[1, 0], [0, 1]]


def test_best_thresholds_known_answers():
    grid = M.threshold_grid(0.10, 0.85, 0.05)
    y = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]])
    probs = np.array(
        [
            # AU a: t <= 0.10 -> F1 4/6; 0.15..0.55 -> TP2 FP1 = 0.8; 0.60 -> 1.0; >= 0.65 -> 2/3.
            # AU b: every t in 0.25..0.85 gives F1 1 -> tie, closest to 0.5 wins: 0.5.
            # AU c: no positives; t > 0.7 predicts none (F1 undefined = no error) -> 0.75.
            [0.9, 0.9, 0.7],
            [0.6, 0.2, 0.6],
            [0.55, 0.2, 0.2],
            [0.1, 0.2, 0.1],
        ]
    )
    assert M.best_thresholds(y, probs, grid).tolist() == pytest.approx([0.6, 0.5, 0.75])


def test_best_thresholds_tie_equidistant_takes_lower():
    y = np.array([[1], [0]])
    probs = np.array([[0.9], [0.1]])
    assert M.best_thresholds(y, probs, np.array([0.6, 0.4]))[0] == pytest.approx(0.4)


def test_per_au_metrics_and_baseline():
    y = np.array([[1, 0], [0, 0], [0, 0], [1, 0], [0, 0]])
    probs = np.array([[0.8, 0.1], [0.7, 0.2], [0.1, 0.3], [0.2, 0.4], [0.3, 0.9]])
    preds = M.apply_thresholds(probs, 0.5)
    rows = M.per_au_metrics(y, probs, preds, [1, 12])
    assert [r["au"] for r in rows] == [1, 12]
    # AU1: preds [1,1,0,0,0] vs y [1,0,0,1,0]: TP1 FP1 FN1 TN2 -> F1 0.5.
    assert (rows[0]["tp"], rows[0]["fp"], rows[0]["fn"], rows[0]["tn"]) == (1, 1, 1, 2)
    assert rows[0]["binary_f1"] == pytest.approx(0.5)
    assert (rows[0]["n_pos"], rows[0]["n_neg"], rows[0]["n_pred_pos"]) == (2, 3, 2)
    # AU1 AUC: positives 0.8, 0.2 vs negatives 0.7, 0.1, 0.3 -> wins 3 + 1 = 4 of 6.
    assert rows[0]["roc_auc"] == pytest.approx(4 / 6)
    # AU12: no positives (one false alarm): undefined, every metric nan, the counts kept.
    assert all(math.isnan(rows[1][key]) for key in M.METRIC_KEYS)
    assert (rows[1]["n_clips"], rows[1]["n_pos"], rows[1]["fp"]) == (5, 0, 1)
    base = M.always_positive_metrics(y, [1, 12])
    # Always positive with P=2, M=3: 2P / (2P + M) = 4/7; negative class F1 0 -> macro 2/7.
    assert base[0]["binary_f1"] == pytest.approx(4 / 7)
    assert base[0]["macro_f1"] == pytest.approx(2 / 7)
    assert math.isnan(base[1]["binary_f1"]) and math.isnan(base[1]["macro_f1"])


def test_fold_mean_differs_from_pooled():
    # Fold A: y [1,0], pred [1,0] -> F1 1. Fold B: y [1,1,1,0], pred [0,0,1,1] -> TP1 FP1 FN2 ->
    # 2/5. Fold C: y [0,0], pred [0,0] -> undefined. Fold mean (A, B) = 0.7; pooled TP2 FP1 FN2
    # -> 4/7.
    y = np.array([1, 0, 1, 1, 1, 0, 0, 0])[:, None]
    pred = np.array([1, 0, 0, 0, 1, 1, 0, 0])[:, None]
    folds = ["A", "A", "B", "B", "B", "B", "C", "C"]
    probs = pred.astype(float)
    rows = M.per_fold_metrics(y, probs, pred, folds, [4])
    assert [r["fold"] for r in rows] == ["A", "B", "C"]
    assert [r["n_clips"] for r in rows] == [2, 4, 2]
    (mean,) = M.fold_mean(rows, [4])
    assert mean["binary_f1_fold_mean"] == pytest.approx(0.7)
    assert mean["binary_f1_n_folds"] == 2 and mean["n_folds"] == 3
    # Fold C has no positive clip: the AU is undefined there, "macro" F1 too (not the negative
    # class's F1 of 1 alone). A: macro 1; B: (2/5 + 0) / 2 = 0.2; mean 0.6.
    assert mean["macro_f1_n_folds"] == 2
    assert mean["macro_f1_fold_mean"] == pytest.approx(0.6)
    pooled = M.per_au_metrics(y, probs, pred, [4])[0]["binary_f1"]
    assert pooled == pytest.approx(4 / 7)
    assert pooled != pytest.approx(mean["binary_f1_fold_mean"])


def test_summarise_skips_nan_and_counts():
    rows = [{"binary_f1": 0.2}, {"binary_f1": float("nan")}, {"binary_f1": 0.6}]
    out = M.summarise(rows, ["binary_f1"])
    assert out["binary_f1"] == pytest.approx(0.4)
    assert out["binary_f1_n_aus"] == 2


def test_aggregate_seeds_mean_std():
    out = M.aggregate_seeds([{"f1": 0.5, "auc": 0.6}, {"f1": 0.7}, {"f1": 0.9, "auc": np.nan}])
    assert out["f1"]["mean"] == pytest.approx(0.7)
    # Sample std (ddof=1): sqrt((0.2^2 + 0 + 0.2^2) / 2) = 0.2.
    assert out["f1"]["std"] == pytest.approx(0.2)
    assert out["f1"]["n"] == 3
    assert out["auc"]["mean"] == pytest.approx(0.6)
    assert math.isnan(out["auc"]["std"]) and out["auc"]["n"] == 1
    single = M.aggregate_seeds([{"f1": 0.4}])["f1"]
    assert single["mean"] == pytest.approx(0.4) and math.isnan(single["std"])
