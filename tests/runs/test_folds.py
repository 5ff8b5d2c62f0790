"""Fold files that do not read back whole, fold files outside the plan, damaged run records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from au_llm.config import LaunchConfig
from au_llm.recipes.cli import main
from au_llm.recipes.experiment import run_protocol
from au_llm.runs.run import Run
from au_llm.runs.status import fold_status
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def finished(tiny_data, tmp_path_factory) -> Path:
    """A finished tiny LOSO run (3 folds, one seed)."""
    cfg = tiny_config(tiny_data, tmp_path_factory.mktemp("runs"), "folds")
    run_dir, _ = run_protocol(cfg, progress=False)
    return run_dir


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of the run folder under the same name (so its saved config still fits)."""
    return Path(shutil.copytree(run_dir, tmp_path / "copy" / run_dir.name))


def fold_files(run_dir: Path, index: int) -> tuple[str, Path, Path]:
    """The fold name, predictions CSV and record of the plan's ``index``-th fold."""
    run = Run.read(run_dir)
    seed, fold = run.plan()[index]
    return fold, run.layout.fold_predictions(seed, fold), run.layout.fold_record(seed, fold)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def test_a_truncated_fold_csv_is_named_set_aside_and_computed_again(
    finished, tiny_data, tmp_path, capsys
):
    run_dir = copy_run(finished, tmp_path)
    fold, csv, record = fold_files(run_dir, 0)
    whole = csv.read_bytes()
    csv.write_bytes(whole[: len(whole) // 2])
    status, out, _ = cli(capsys, "status", run_dir)
    assert status == 0
    assert f"{csv}: not the file the fold wrote" in out and "1 failed" in out
    assert "the next run sets it aside and computes the fold again" in out
    assert csv.exists(), "status renames nothing"
    status, out, _ = cli(capsys, "report", run_dir)
    assert status == 0
    assert f"fold seed1/{fold} was set aside" in out and f"{csv}: not the file" in out
    assert "partial: 2 of 3 folds" in out
    assert not csv.exists() and not record.exists()
    aside = sorted(p.name for p in csv.parent.glob(f"{fold}.*.damaged"))
    assert [name.split(".")[1] for name in aside] == ["csv", "json"]
    assert (csv.parent / aside[0]).read_bytes() == whole[: len(whole) // 2], "never deleted"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["n_folds"] == 2 and any("set aside" in w for w in summary["warnings"])
    assert "set aside" in (run_dir / "report.md").read_text()
    status, out, _ = cli(capsys, "status", run_dir)
    assert f"pending  set aside earlier, not read back whole: {aside[0]}" in out
    cfg = tiny_config(tiny_data, run_dir.parent, run_dir.name)
    run_protocol(cfg, progress=False)
    assert csv.read_bytes() == whole, "the fold is computed again, exactly as before"
    assert "partial" not in json.loads((run_dir / "summary.json").read_text())


def test_a_truncated_fold_record_is_named_and_the_fold_set_aside(finished, tmp_path, capsys):
    run_dir = copy_run(finished, tmp_path)
    fold, csv, record = fold_files(run_dir, 1)
    record.write_text(record.read_text()[:40])
    status, out, _ = cli(capsys, "report", run_dir)
    assert status == 0
    assert f"{record}: not a readable JSON file (damaged or truncated?)" in out
    assert f"fold seed1/{fold} was set aside" in out and not csv.exists()


def test_a_fold_written_before_hashes_is_checked_by_its_row_count(finished, tmp_path, capsys):
    run_dir = copy_run(finished, tmp_path)
    fold, csv, record = fold_files(run_dir, 2)
    info = json.loads(record.read_text())
    del info["predictions_sha256"]
    record.write_text(json.dumps(info))
    lines = csv.read_text().splitlines(keepends=True)
    assert (
        fold_status(Run.read(run_dir), 1, fold, lock_timeout=LaunchConfig.lock_timeout).state
        == "done"
    ), "a whole old fold counts"
    csv.write_text("".join(lines[:2]))
    status, out, _ = cli(capsys, "status", run_dir)
    assert f"{csv}: 1 rows, but the fold tested {info['n_test']} clips (truncated?)" in out
    csv.write_text("".join(lines)[:-9])  # every row there, the last one cut short
    status, out, _ = cli(capsys, "status", run_dir)
    assert f"{csv}: ends inside a row (truncated?)" in out
    status, out, err = cli(capsys, "report", run_dir)
    assert status == 0 and "nan" not in err and f"fold seed1/{fold} was set aside" in out


def test_fold_files_outside_the_plan_are_named_and_never_pooled(finished, tmp_path, capsys):
    run_dir = copy_run(finished, tmp_path)
    info = json.loads((run_dir / "run.json").read_text())
    kept, dropped = info["folds"][:2], info["folds"][2]
    (run_dir / "run.json").write_text(json.dumps({**info, "folds": kept}))
    status, out, _ = cli(capsys, "report", run_dir)
    assert status == 0
    assert f"fold files outside the run's plan ({run_dir.name}/run.json) were left out" in out
    assert f"folds/seed1/{dropped}.csv" in out and "partial" not in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["folds"] == kept
    assert f"folds/seed1/{dropped}.csv" in (run_dir / "report.md").read_text()


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[1, 2]", "not a run record (a JSON list, not an object)"),
        ('{"aus": [1], "folds": "sub01"}', "not a run record ('folds' is not a list of str"),
        ("42", "not a run record (a JSON int, not an object)"),
        ('{"aus": [1, 2], "fol', "not a readable JSON file (damaged or truncated?)"),
    ],
)
def test_a_run_json_of_another_shape_exits_2_naming_it(finished, tmp_path, capsys, text, problem):
    run_dir = copy_run(finished, tmp_path)
    (run_dir / "run.json").write_text(text)
    for command in ("report", "status"):
        status, out, err = cli(capsys, command, run_dir)
        assert status == 2 and "Traceback" not in err
        assert f"au-llm {command}: error: {run_dir / 'run.json'}: {problem}" in err
