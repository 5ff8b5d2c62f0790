"""Rebuilding a run directory's outputs from its finished folds."""

import json

import pandas as pd

from au_llm.data.manifest import read_manifest
from au_llm.protocols import loso_folds
from au_llm.recipes.experiment import run_protocol
from au_llm.recipes.report import build_report
from au_llm.reports.rebuild import headline_text
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


def test_a_shard_alone_is_reported_as_partial(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, "shard")
    run_dir, tables = run_protocol(cfg, shard=(2, 2), progress=False)
    names = [fold.name for fold in loso_folds(read_manifest(tiny_data.casme2))]
    run_info = json.loads((run_dir / "run.json").read_text())
    assert run_info["folds"] == names
    line = f"partial: 1 of 3 folds (missing: seed1/{names[0]}, seed1/{names[2]})"
    assert json.loads((run_dir / "summary.json").read_text())["partial"] == {
        "finished": 1,
        "expected": 3,
        "missing": [f"seed1/{names[0]}", f"seed1/{names[2]}"],
    }
    assert line in (run_dir / "report.md").read_text()
    assert line in headline_text(run_dir, tables)
    run_protocol(cfg, shard=(1, 2), progress=False)
    assert "partial" not in json.loads((run_dir / "summary.json").read_text())
    assert "partial" not in (run_dir / "report.md").read_text()
