import json

import pandas as pd
import pytest

from au_llm.ablate import compare, parse_sweep, run_ablation
from au_llm.config import ConfigError
from au_llm.data.manifest import read_manifest
from tests.conftest import CONFIG_DIR

CONFIG = CONFIG_DIR / "tiny_cpu_loso.yaml"


def test_the_sweep_is_the_one_comma_separated_setting():
    fixed, sweep = parse_sweep(CONFIG, ["train.epochs=1", "explain.weight=0,0.5,1"])
    assert fixed == ["train.epochs=1"]
    assert sweep.key == "model.explain.weight" and sweep.values == ("0", "0.5", "1")
    assert parse_sweep(CONFIG, ["train.lr=1e-3,1e-4"])[1].key == "train.lr"
    for bad in (
        ["train.epochs=1"],
        ["train.lr=1e-3,1e-4", "explain.weight=0,1"],
        ["seeds=1,2"],
        ["data.aus=1,2"],
        ["explain.nothing=0,1"],
        ["explain.weight=0,0"],
        ["explain.weight=0,-1"],
    ):
        with pytest.raises(ConfigError):
            parse_sweep(CONFIG, bad)


def test_a_difference_exceeds_the_seed_spread_only_beyond_both_stds():
    rows = [
        {"binary_f1_mean": 0.5, "binary_f1_std": 0.05},
        {"binary_f1_mean": 0.58, "binary_f1_std": 0.02},
        {"binary_f1_mean": 0.6, "binary_f1_std": 0.04},
        {"binary_f1_mean": 0.6, "binary_f1_std": None},
    ]
    compared = compare(rows)
    assert [row["exceeds"] for row in compared] == [False, True, True, None]
    assert compared[1]["diff_vs_first"] == pytest.approx(0.08)


def test_ablate_runs_every_setting_on_identical_folds_and_seeds(tiny_data, tmp_path):
    first = sorted(read_manifest(tiny_data.casme2)["subject"])[0]
    overrides = [
        "name=abl",
        f"out_dir='{tmp_path}'",
        f"data.cache_dir='{tiny_data.cache_dir}'",
        f"data.manifests=['{tiny_data.casme2}']",
        "seeds=[1,2]",
        "model.explain.max_new_tokens=12",
        "explain.weight=0,1",
    ]
    out_dir, text = run_ablation(CONFIG, overrides, [first], progress=False)
    assert out_dir == tmp_path / "abl_ablate_explain.weight"
    runs = [tmp_path / "abl_explain.weight_0", tmp_path / "abl_explain.weight_1"]
    infos = [json.loads((run / "run.json").read_text()) for run in runs]
    assert infos[0]["folds"] == infos[1]["folds"] and infos[0]["seeds"] == [1, 2]
    assert infos[0]["data_fingerprint"] == infos[1]["data_fingerprint"]
    records = [sorted((run / "folds").glob("seed*/*.json")) for run in runs]
    seeds = [[json.loads(p.read_text())["fold_seed"] for p in paths] for paths in records]
    assert len(seeds[0]) == 2 and seeds[0] == seeds[1]
    without = pd.read_csv(runs[0] / "predictions.csv")
    explained = pd.read_csv(runs[1] / "predictions.csv", keep_default_na=False)
    assert "explanation" not in without.columns and "explanation" in explained.columns
    assert len(without) == len(explained)
    table = pd.read_csv(out_dir / "ablation.csv")
    assert table["value"].tolist() == [0, 1]
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert table["binary_f1_mean"][0] == pytest.approx(summary["metrics"]["pooled_binary_f1"])
    threshold_f1 = summary["metrics"]["binary_f1_train_threshold"]
    assert table["train_threshold_f1"][0] == pytest.approx(threshold_f1)
    assert "training thresholds" in text and f"| {threshold_f1:.3f} |" in text
    assert "| 0 |" in text and "(reference)" in text and "Explanations" in text
    assert (out_dir / "ablation.md").read_text() == text
