"""Metric tables, metric files and the headline table of a predictions table."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from au_llm import metrics as M
from au_llm.reports.tables import (
    OPTIMISTIC_NOTE,
    compute_tables,
    headline_table,
    write_metric_files,
)
from tests.reports.helpers import AUS, predictions_frame


def _arrays(frame: pd.DataFrame, kind: str) -> np.ndarray:
    return np.stack([frame[M.au_column(a, kind)].to_numpy() for a in AUS], 1)


def test_compute_tables_matches_metric_functions():
    frame = predictions_frame()
    tables = compute_tables(frame, AUS)
    y, probs, preds = _arrays(frame, "true"), _arrays(frame, "prob"), _arrays(frame, "pred")
    expected = M.per_au_metrics(y, probs, preds, AUS)
    baseline = M.always_positive_metrics(y, AUS)
    per_au = tables.per_au.set_index("au")
    for row, base in zip(expected, baseline, strict=True):
        got = per_au.loc[row["au"]]
        for key in ("binary_f1", "macro_f1", "precision", "recall", "roc_auc"):
            assert got[key] == pytest.approx(row[key], nan_ok=True), key
        for key in ("n_pos", "n_neg", "n_pred_pos", "tp", "fp", "fn", "tn", "n_clips"):
            assert got[key] == row[key], key
        assert got["baseline_binary_f1"] == pytest.approx(base["binary_f1"])
        assert got["baseline_macro_f1"] == pytest.approx(base["macro_f1"])
    # AU12 by hand: pred [0,0,0,1,0,0,1] vs true [0,0,0,1,0,1,0] -> TP1 FP1 FN1 -> 0.5.
    assert per_au.loc[12, "binary_f1"] == pytest.approx(0.5)
    # AU12 per fold: s1 has no positive and no positive decision (undefined); s2: TP1 FP1 FN1.
    assert per_au.loc[12, "binary_f1_fold_mean"] == pytest.approx(0.5)
    assert per_au.loc[12, "binary_f1_n_folds"] == 1
    expected_cols = {
        "seed",
        "au",
        "binary_f1",
        "macro_f1",
        "precision",
        "recall",
        "roc_auc",
        "binary_f1_fold_mean",
        "macro_f1_fold_mean",
        "n_pos",
        "n_neg",
        "n_pred_pos",
        "baseline_binary_f1",
        "baseline_macro_f1",
    }
    assert expected_cols <= set(tables.per_au.columns)
    assert {"seed", "fold", "au", "binary_f1", "macro_f1", "n_pos", "n_clips"} <= set(
        tables.per_fold.columns
    )
    assert len(tables.per_fold) == 2 * len(AUS)
    assert math.isnan(tables.per_fold.query("fold == 's1' and au == 12")["binary_f1"].item())


def test_summary_values():
    tables = compute_tables(predictions_frame(), AUS)
    s = tables.summary
    per_au = tables.per_au
    assert s["aus"] == AUS and s["seeds"] == [1] and s["n_seeds"] == 1
    assert s["folds"] == ["s1", "s2"] and s["n_folds"] == 2 and s["n_clips"] == 7
    assert s["metrics"]["pooled_binary_f1"] == pytest.approx(per_au["binary_f1"].mean())
    assert s["metrics"]["pooled_macro_f1"] == pytest.approx(per_au["macro_f1"].mean())
    assert s["metrics"]["baseline_binary_f1"] == pytest.approx(per_au["baseline_binary_f1"].mean())
    assert s["metrics"]["fold_mean_binary_f1"] == pytest.approx(
        per_au["binary_f1_fold_mean"].mean()
    )
    assert math.isnan(s["metrics_std"]["pooled_binary_f1"])  # one seed: no spread


def test_aus_inferred_from_columns():
    assert compute_tables(predictions_frame()).aus == AUS


def test_several_seeds_mean_and_std():
    frame = pd.concat(
        [predictions_frame(1), predictions_frame(2, flip=2), predictions_frame(3, flip=1)],
        ignore_index=True,
    )
    tables = compute_tables(frame, AUS)
    per_seed = [
        compute_tables(predictions_frame(1), AUS).summary["metrics"]["pooled_binary_f1"],
        compute_tables(predictions_frame(2, flip=2), AUS).summary["metrics"]["pooled_binary_f1"],
        compute_tables(predictions_frame(3, flip=1), AUS).summary["metrics"]["pooled_binary_f1"],
    ]
    assert len(set(np.round(per_seed, 9))) == 3
    s = tables.summary
    assert s["seeds"] == [1, 2, 3]
    assert s["metrics"]["pooled_binary_f1"] == pytest.approx(np.mean(per_seed))
    assert s["metrics_std"]["pooled_binary_f1"] == pytest.approx(np.std(per_seed, ddof=1))
    assert len(tables.per_au) == 3 * len(AUS)
    au1 = tables.per_au[tables.per_au["au"] == 1]["binary_f1"]
    mean_row = tables.per_au_mean.set_index("au").loc[1]
    assert mean_row["binary_f1"] == pytest.approx(au1.mean())
    assert mean_row["binary_f1_std"] == pytest.approx(au1.std(ddof=1))
    assert "(means over 3 seeds)" in headline_table(tables)


def test_invalid_predictions_name_the_problem():
    frame = predictions_frame()
    with pytest.raises(ValueError, match="AU12_true"):
        compute_tables(frame.drop(columns="AU12_true"), AUS)
    bad = frame.copy()
    bad.loc[4, "AU01_pred"] = 2
    with pytest.raises(ValueError, match=r"row 4 \(casme2/s2/c4\).*AU01_pred"):
        compute_tables(bad, AUS)
    bad = frame.copy()
    bad.loc[1, "AU12_prob"] = np.nan
    with pytest.raises(ValueError, match="AU12_prob"):
        compute_tables(bad, AUS)
    with pytest.raises(ValueError, match="duplicate"):
        compute_tables(pd.concat([frame, frame.iloc[[0]]], ignore_index=True), AUS)


def test_write_metric_files_nan_as_null(tmp_path):
    frame = predictions_frame()
    for au in AUS:  # no positive label and no positive decision: binary F1 undefined everywhere
        frame[M.au_column(au, "true")] = 0
        frame[M.au_column(au, "pred")] = 0
    tables = compute_tables(frame, AUS)
    write_metric_files(tables, tmp_path, optimistic=True)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["optimistic"] is True and summary["note"] == OPTIMISTIC_NOTE
    assert summary["metrics"]["pooled_binary_f1"] is None
    assert summary["per_seed"]["1"]["pooled_roc_auc"] is None
    assert summary["metrics_std"]["pooled_macro_f1"] is None  # one seed
    assert summary["n_aus_defined"]["pooled_binary_f1"] == 0
    # No positive label: the AUs are undefined, not "macro" F1 1.0 from the negative class alone.
    assert summary["metrics"]["pooled_macro_f1"] is None
    assert [u["au"] for u in summary["undefined_aus"]] == AUS
    per_au = pd.read_csv(tmp_path / "metrics_per_au.csv")
    assert per_au["binary_f1"].isna().all()
    assert list(per_au.columns) == [*tables.per_au.columns, "note"]
    assert (per_au["note"] == OPTIMISTIC_NOTE).all()
    assert len(pd.read_csv(tmp_path / "metrics_per_fold.csv")) == len(tables.per_fold)
    write_metric_files(
        compute_tables(predictions_frame(), AUS), tmp_path / "plain", optimistic=False
    )
    plain_au = pd.read_csv(tmp_path / "plain" / "metrics_per_au.csv")
    assert list(plain_au.columns) == list(tables.per_au.columns)
    plain = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert plain["optimistic"] is False and "note" not in plain
    assert plain["metrics"]["pooled_binary_f1"] == pytest.approx(
        pd.read_csv(tmp_path / "plain" / "metrics_per_au.csv")["binary_f1"].mean()
    )


def test_headline_table():
    tables = compute_tables(predictions_frame(), AUS)
    text = headline_table(tables)
    lines = text.splitlines()
    au12 = next(line for line in lines if line.startswith("AU12"))
    assert au12.split()[1] == "0.500"
    mean = next(line for line in lines if line.startswith("mean"))
    assert mean.split()[1] == f"{tables.summary['metrics']['pooled_binary_f1']:.3f}"
    assert OPTIMISTIC_NOTE in headline_table(tables, optimistic=True)
    assert OPTIMISTIC_NOTE not in text
