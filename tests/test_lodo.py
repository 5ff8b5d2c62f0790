"""Leave one dataset out over four synthetic datasets in their real formats."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from au_llm.config import load_config, save_config
from au_llm.data.build import build_manifest
from au_llm.data.manifest import read_manifest, write_manifest
from au_llm.preprocess.run import PreprocessError
from au_llm.protocols import LeakageError, lodo_folds
from au_llm.recipes.experiment import run_protocol
from au_llm.reports.rebuild import headline_text
from au_llm.synth.styles import COMPOSITE_STYLES, write_composite_style
from tests.conftest import kill_within_second_fold

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "tiny_cpu_lodo.yaml"


@pytest.fixture(scope="module")
def composite(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    """Manifests of four tiny synthetic datasets (2 subjects x 3 clips each) and a cache dir."""
    root = tmp_path_factory.mktemp("composite")
    paths = []
    for style in COMPOSITE_STYLES:
        written = write_composite_style(style, root / style, 2, 3, seed=3, frames_per_clip=6)
        result = build_manifest(style, root=written.root, coding=written.coding, strict=True)
        paths.append(root / f"{style}.csv")
        write_manifest(result.frame, paths[-1])
    return paths, root / "cache"


def _config(composite, out_dir: Path, name: str, *extra: str):
    paths, cache = composite
    listed = ",".join(f"'{p}'" for p in paths)
    overrides = [f"name={name}", f"out_dir='{out_dir}'", f"data.cache_dir='{cache}'"]
    return load_config(CONFIG, [*overrides, f"data.manifests=[{listed}]", "seeds=[1,2]", *extra])


@pytest.fixture(scope="module")
def lodo_run(composite, tmp_path_factory):
    cfg = _config(composite, tmp_path_factory.mktemp("runs"), "lodo")
    run_dir, tables = run_protocol(cfg, progress=False)
    return run_dir, tables


def test_one_fold_per_dataset_with_both_f1_conventions(lodo_run) -> None:
    run_dir, _ = lodo_run
    preds = pd.read_csv(run_dir / "predictions.csv", dtype={"subject": str, "clip": str})
    assert sorted(preds["fold"].unique()) == sorted(COMPOSITE_STYLES)
    assert (preds["fold"] == preds["dataset"]).all()
    per_fold = pd.read_csv(run_dir / "metrics_per_fold.csv")
    assert sorted(per_fold["fold"].astype(str).unique()) == sorted(COMPOSITE_STYLES)
    assert {"binary_f1", "macro_f1"} <= set(per_fold.columns)
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("pooled_binary_f1", "pooled_macro_f1"):
        assert key in summary["metrics"] and key in summary["metrics_std"]
    assert sorted(summary["per_seed"]) == ["1", "2"]


def test_uncoded_aus_are_blank_labels_and_not_scored(lodo_run) -> None:
    run_dir, _ = lodo_run
    preds = pd.read_csv(run_dir / "predictions.csv", dtype=str, keep_default_na=False)
    casme_rows = preds[preds["dataset"] == "casme"]
    # CASME codes AU1, AU4, AU9, AU14 only: its AU2 labels are unknown, its AU4 labels known.
    assert (casme_rows["AU02_true"] == "").all()
    assert (casme_rows["AU04_true"] != "").all()
    per_au = pd.read_csv(run_dir / "metrics_per_au.csv")
    n_clips = per_au[per_au["seed"] == 1].set_index("au")["n_clips"]
    known_au2 = (preds[preds["seed"] == "1"]["AU02_true"] != "").sum()
    assert n_clips[2] == known_au2 < n_clips[4]


def test_lodo_refuses_a_clip_copied_into_another_dataset(composite, tmp_path) -> None:
    paths, _ = composite
    casme = read_manifest(paths[0])
    copy = casme.head(1).assign(dataset="copied", subject="x1", clip="renamed")
    copied = tmp_path / "copied.csv"
    write_manifest(copy, copied)
    cfg = _config(composite, tmp_path, "leak", f"data.manifests=['{paths[0]}','{copied}']")
    with pytest.raises(LeakageError, match="identical source frames on both sides"):
        run_protocol(cfg, progress=False)


def test_lodo_needs_two_datasets(composite) -> None:
    with pytest.raises(ValueError, match="at least two datasets"):
        lodo_folds(read_manifest(composite[0][0]))


def test_sigkill_mid_fold_then_rerun_is_byte_identical(lodo_run, composite, tmp_path) -> None:
    reference, _ = lodo_run
    cfg = _config(composite, tmp_path, "lodo")
    config_file = tmp_path / "killed.yaml"
    save_config(cfg, config_file)
    folds_dir = tmp_path / "lodo" / "folds" / "seed1"

    def launch() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "au_llm.recipes.cli", "lodo", "--config", str(config_file)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TQDM_DISABLE": "1"},
        )

    proc = launch()
    kill_within_second_fold(proc, folds_dir)
    assert 1 <= len(list(folds_dir.glob("*.csv"))) < 4
    assert launch().wait(timeout=300) == 0
    for name in ("predictions.csv", "metrics_per_au.csv", "metrics_per_fold.csv"):
        assert (tmp_path / "lodo" / name).read_bytes() == (reference / name).read_bytes(), name


def test_per_dataset_table_scores_each_dataset_on_its_own(lodo_run) -> None:
    run_dir, _ = lodo_run
    table = pd.read_csv(run_dir / "metrics_per_dataset.csv")
    assert sorted(table["dataset"].unique()) == sorted(COMPOSITE_STYLES)
    counts = table[table["seed"] == 1].set_index(["dataset", "au"])["n_clips"]
    assert counts[("casme", 2)] == 0  # CASME does not code AU2: no clip scored
    assert counts[("casme", 4)] == 6 and counts[("casme3", 2)] == 6
    summary = json.loads((run_dir / "summary.json").read_text())["per_dataset"]
    assert sorted(summary) == sorted(COMPOSITE_STYLES)
    assert {"pooled_binary_f1", "pooled_macro_f1", "pooled_binary_f1_std"} <= set(summary["mmew"])
    assert summary["4dme"]["n_clips"] == 6


def test_an_au_no_training_dataset_codes_is_left_out_where_never_learnt(lodo_run) -> None:
    """Only CAS(ME)^3 codes AU15: its fold never learns AU15, so AU15 is scored nowhere."""
    run_dir, tables = lodo_run
    records = [
        json.loads(p.read_text()) for p in sorted((run_dir / "folds").glob("seed*/casme3.json"))
    ]
    assert [r["train_labels"]["15"] for r in records] == [{"known": 0, "positive": 0}] * 2
    summary = json.loads((run_dir / "summary.json").read_text())
    line = (
        "AU15: no known label among the training clips of seed1/casme3, seed2/casme3; those "
        "folds never learnt it, so their test clips are left out of AU15's metrics"
    )
    assert line in summary["warnings"] and line in (run_dir / "report.md").read_text()
    assert {"au": 15, "n_clips": 0, "n_pos": 0, "reason": "no test clip with a known label"} in (
        summary["undefined_aus"]
    )
    per_au = pd.read_csv(run_dir / "metrics_per_au.csv").set_index("au")
    assert per_au.loc[15, ["binary_f1", "macro_f1", "roc_auc"]].isna().all().all()
    preds = pd.read_csv(run_dir / "predictions.csv", dtype=str, keep_default_na=False)
    assert (preds[preds["dataset"] == "casme3"]["AU15_true"] != "").all(), "the labels are kept"


def test_a_dataset_whose_every_clip_fails_is_named_in_the_report(composite, tmp_path, caplog):
    """Every clip of one dataset fails preprocessing: lodo says it has 3 folds, not 4."""
    paths, _ = composite
    lost = read_manifest(paths[1])
    dataset = lost["dataset"].iloc[0]
    for i, row in lost.iterrows():
        frames = Path(shutil.copytree(row["frames_dir"], tmp_path / "broken" / str(i)))
        for path in frames.iterdir():
            path.write_bytes(b"not an image")
        lost.loc[i, "frames_dir"] = str(frames)
    broken = tmp_path / f"{dataset}.csv"
    write_manifest(lost, broken)
    listed = ",".join(f"'{p}'" for p in [*paths[:1], broken, *paths[2:]])
    cfg = _config(composite, tmp_path, "lost", f"data.manifests=[{listed}]", "seeds=[1]")
    with pytest.raises(PreprocessError):
        run_protocol(replace(cfg, strict=True, name="strict"), progress=False)
    with caplog.at_level(logging.WARNING):
        run_dir, tables = run_protocol(cfg, fold_names=[paths[0].stem], progress=False)
    assert f"dataset {dataset}: all {len(lost)} of its clips failed preprocessing" in caplog.text
    assert json.loads((run_dir / "run.json").read_text())["lost_datasets"] == {dataset: len(lost)}
    line = (
        f"dataset {dataset}: all {len(lost)} of its clips failed preprocessing "
        "(preprocess_report.csv); the run holds none of its clips, so it has 3 folds, not 4"
    )
    assert line in headline_text(run_dir, tables)
    assert line in (run_dir / "report.md").read_text()
