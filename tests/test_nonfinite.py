"""No row, table or summary holds a non-finite score or an undefined metric shown as a number."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from au_llm import fitting, training
from au_llm.answers import target_answer
from au_llm.config import LaunchConfig
from au_llm.data.manifest import read_manifest
from au_llm.inference import ClipOutputs
from au_llm.prediction_rows import NonFiniteScoreError, output_columns
from au_llm.recipes import experiment
from au_llm.recipes.ablate import (
    Ablation,
    Arm,
    _summary_row,
    ablation_markdown,
    compare,
    paired_rows,
)
from au_llm.recipes.experiment import run_protocol
from au_llm.reports.rebuild import headline_text
from au_llm.runs.run import Run
from au_llm.runs.status import fold_status
from au_llm.training import DivergedError
from tests.conftest import tiny_config

METRICS = ["binary_f1", "macro_f1", "precision", "recall", "roc_auc"]


def _poisoned(train):
    """``train`` (a function training ``model``, its first argument), then NaN weights in the
    model's linear head: every AU logit becomes NaN."""

    def poisoned(model, *args, **kwargs):
        result = train(model, *args, **kwargs)
        with torch.no_grad():
            model.head.weight.fill_(float("nan"))
        return result

    return poisoned


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_score_never_becomes_a_row(bad):
    probs = np.array([[0.9, 0.2], [0.4, bad]])
    keys = pd.DataFrame({"dataset": ["casme2"] * 2, "clip": ["EP01", "EP02"], "fold": "sub01"})
    with pytest.raises(NonFiniteScoreError) as caught:
        output_columns(ClipOutputs(probs), [1, 12], 0.5, "linear", ["list"], keys=keys)
    assert f"AU12_prob = {bad} for dataset=casme2 clip=EP02 fold=sub01" in str(caught.value)
    assert "(1 of 4 scores are not finite)" in str(caught.value)
    with pytest.raises(NonFiniteScoreError, match="for row 1"):
        output_columns(ClipOutputs(probs), [1, 12], 0.5, "linear", ["list"])


def test_a_text_head_answering_from_nan_logits_never_becomes_a_row():
    # The answers parse (0/1 decisions are always finite), but the hidden states they were
    # decoded from give NaN scores: the row is refused as under a linear head.
    answers = {"list": [target_answer("list", [1, 12], [1]), target_answer("list", [1, 12], [])]}
    outputs = ClipOutputs(np.array([[0.9, 0.2], [0.4, float("nan")]]), answers)
    with pytest.raises(NonFiniteScoreError, match="AU12_prob = nan for row 1"):
        output_columns(outputs, [1, 12], 0.5, "text", ["list"])
    finite = ClipOutputs(np.array([[0.9, 0.2], [0.4, 0.3]]), answers)
    columns = output_columns(finite, [1, 12], 0.5, "text", ["list"])
    assert list(columns["AU01_prob"]) == [1.0, 0.0] and list(columns["AU12_prob"]) == [0.0, 0.0]


def test_a_diverging_training_stops_its_fold_naming_it(tiny_data, tmp_path, monkeypatch, precision):
    real = training.batch_loss
    monkeypatch.setattr(
        training, "batch_loss", lambda *args, **kw: real(*args, **kw) * float("nan")
    )
    cfg = tiny_config(tiny_data, tmp_path, "diverged", "loso", f"train.precision={precision}")
    first = sorted(read_manifest(tiny_data.casme2)["subject"].unique())[0]
    with pytest.raises(DivergedError, match=rf"fold {first}: training loss at epoch 1, step 1"):
        run_protocol(cfg, fold_names=[first], progress=False)
    run = Run.read(tmp_path / "diverged")
    assert not run.is_finished(1, first) and not run.layout.fold_record(1, first).exists()
    status = fold_status(run, 1, first, lock_timeout=LaunchConfig.lock_timeout)
    assert status.state == "failed" and "DivergedError" in status.detail


def test_nan_scores_of_the_training_clips_never_choose_thresholds(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(fitting, "train_model", _poisoned(fitting.train_model))
    cfg = tiny_config(tiny_data, tmp_path, "nan_train", "loso", "eval.threshold_policy=train")
    first = sorted(read_manifest(tiny_data.casme2)["subject"].unique())[0]
    with pytest.raises(NonFiniteScoreError, match=rf"fold {first}: scores of its training clips"):
        run_protocol(cfg, fold_names=[first], progress=False)
    assert not Run.read(tmp_path / "nan_train").is_finished(1, first)


def test_nan_logits_and_an_au_without_positives_never_reach_a_table_as_a_number(
    tiny_data, tmp_path, monkeypatch, precision
):
    """AU45 is in no tiny clip: undefined everywhere; NaN test logits stop their fold."""
    cfg = tiny_config(
        tiny_data, tmp_path, "nan", "loso", "data.aus=[1,45]", f"train.precision={precision}"
    )
    real = experiment.fit
    monkeypatch.setattr(experiment, "fit", _poisoned(real))
    first = sorted(read_manifest(tiny_data.casme2)["subject"].unique())[0]
    with pytest.raises(NonFiniteScoreError) as caught:
        run_protocol(cfg, fold_names=[first], progress=False)
    message = str(caught.value)
    assert f"AU01_prob = nan for dataset=casme2 subject={first} clip=" in message
    assert f"fold={first} seed=1" in message and "nothing of it is written" in message
    run = Run.read(tmp_path / "nan")
    assert (
        not run.is_finished(1, first)
        and fold_status(run, 1, first, lock_timeout=LaunchConfig.lock_timeout).state == "failed"
    )

    monkeypatch.setattr(experiment, "fit", real)
    run_dir, tables = run_protocol(cfg, progress=False)
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert np.isfinite(predictions[["AU01_prob", "AU45_prob"]].to_numpy()).all()
    assert (predictions["AU45_true"] == 0).all() and (predictions["AU01_true"] == 1).any()

    per_au = pd.read_csv(run_dir / "metrics_per_au.csv").set_index("au")
    assert per_au.loc[45, METRICS].isna().all() and per_au.loc[45, "n_pos"] == 0
    assert per_au.loc[45, "n_clips"] == len(predictions)
    assert per_au.loc[1, ["binary_f1", "macro_f1"]].notna().all()
    per_fold = pd.read_csv(run_dir / "metrics_per_fold.csv")
    assert per_fold[per_fold["au"] == 45][METRICS].isna().all().all()

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["undefined_aus"] == [
        {
            "au": 45,
            "n_clips": len(predictions),
            "n_pos": 0,
            "reason": f"no positive among its {len(predictions)} test clips",
        }
    ]
    assert summary["n_aus_defined"]["pooled_macro_f1"] == 1
    assert summary["metrics"]["pooled_macro_f1"] == pytest.approx(per_au.loc[1, "macro_f1"])

    line = f"AU45 (no positive among its {len(predictions)} test clips)"
    headline = headline_text(run_dir, tables)
    assert line in headline and "1 of 2 AUs are scored" in headline
    au45 = next(row for row in headline.splitlines() if row.startswith("AU45"))
    assert au45.split()[1:5] == ["n/a"] * 4
    report = (run_dir / "report.md").read_text()
    assert line in report
    row = next(r for r in report.splitlines() if r.startswith("| AU45 |"))
    assert [cell.strip() for cell in row.split("|")[5:10]] == ["n/a"] * 5

    arm = Arm("0.001", ("train.lr=0.001",))
    rows = paired_rows(compare([_summary_row(arm, run_dir)]), [run_dir], 0)
    ablation = ablation_markdown(Ablation("train.lr", (arm,), "0.001", "train.lr"), rows, 3)
    assert "Undefined (no positive test clip), left out of every mean: AU45." in ablation
