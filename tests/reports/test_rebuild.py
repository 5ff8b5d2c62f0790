"""Rebuilding a run directory's outputs from its finished folds."""

import pandas as pd

from au_llm.data.manifest import read_manifest
from au_llm.protocol import loso_folds, run_protocol
from au_llm.reports.rebuild import build_report
from tests.conftest import tiny_config


def read_predictions(run_dir):
    """The rebuilt predictions.csv of a run directory."""
    return pd.read_csv(run_dir / "predictions.csv", dtype={"subject": str, "clip": str})


def test_report_rebuilds_from_finished_folds_only(tiny_data, tmp_path):
    partial = tiny_config(tiny_data, tmp_path, "loso")
    first = loso_folds(read_manifest(tiny_data.casme2))[0].name
    run_protocol(partial, fold_names=[first], progress=False)
    tables = build_report(tmp_path / "loso")
    preds = read_predictions(tmp_path / "loso")
    assert set(preds["fold"]) == {first}
    assert tables.summary["n_folds"] == 1
