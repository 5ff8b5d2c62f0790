import json

import pandas as pd
import pytest

from au_llm.config import ConfigError
from au_llm.data.manifest import read_manifest
from au_llm.recipes.ablate import compare, parse_sweep, read_arms, run_ablation
from au_llm.reports.paired import subject_metrics
from tests.conftest import CONFIG_DIR

CONFIG = CONFIG_DIR / "tiny_cpu_loso.yaml"


def test_the_sweep_is_the_one_comma_separated_setting():
    fixed, sweep = parse_sweep(CONFIG, ["train.epochs=1", "llm.lora.r=4,8,16"])
    assert fixed == ["train.epochs=1"]
    assert sweep.swept_key == "model.llm.lora.r"
    assert [arm.name for arm in sweep.arms] == ["4", "8", "16"]
    assert sweep.arms[1].overrides == ("model.llm.lora.r=8",)
    assert sweep.reference == "4"
    assert parse_sweep(CONFIG, ["train.lr=1e-3,1e-4"])[1].swept_key == "train.lr"
    assert parse_sweep(CONFIG, ["train.lr=1e-3,1e-4"], reference="1e-4")[1].reference == "1e-4"
    with pytest.raises(ConfigError, match="reference"):
        parse_sweep(CONFIG, ["train.lr=1e-3,1e-4"], reference="1e-5")
    for bad in (
        ["train.epochs=1"],
        ["train.lr=1e-3,1e-4", "llm.lora.r=4,8"],
        ["seeds=1,2"],
        ["data.aus=1,2"],
        ["explain.nothing=0,1"],
        ["llm.lora.r=4,4"],
        ["llm.lora.r=4,-1"],
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
    assert compared[1]["diff_vs_reference"] == pytest.approx(0.08)
    against_second = compare(rows, reference=1)
    assert against_second[0]["diff_vs_reference"] == pytest.approx(-0.08)
    assert [row["exceeds"] for row in against_second] == [True, False, False, None]


def test_an_arms_file_names_settings_of_several_keys(tmp_path):
    arms = tmp_path / "arms.yaml"
    arms.write_text(
        "base: []\n"
        "slow: [train.lr=1e-4, skip_head=true]\n"
        "vision: [model.vision_head=true, train.vision_weight=1]\n"
        "wide: ['model.projector.hidden=64']\n"
    )
    ablation = read_arms(arms, CONFIG, ["train.epochs=1"], reference="slow")
    assert [arm.name for arm in ablation.arms] == ["base", "slow", "vision", "wide"]
    assert ablation.arms[1].overrides == ("train.lr=1e-4", "model.skip_head=true")
    assert ablation.reference == "slow" and ablation.label == "arms"
    for text, match in (
        ("- train.lr=1e-4\n", "mapping"),
        ("a: [train.lr=1e-4]\nb: [train.lr=1e-4]\n", "same setting"),
        ("a: ['seeds=[1,2]']\n", "cannot be compared"),
        ("a: [\n", "arms.yaml: not valid YAML"),
        ("a: [train.nothing=1]\n", "arm a: .*train.nothing is not a config key"),
        ("a: [model.vision_head=true]\n", "arm a: .*vision_weight"),
        ("a: [train.lr=-1]\n", "arm a"),
        ("'a b': []\n", "arm name"),
        ("a: train.lr=1e-4\n", "list"),
    ):
        arms.write_text(text)
        with pytest.raises(ConfigError, match=match):
            read_arms(arms, CONFIG, [])


def test_ablate_runs_every_setting_on_identical_folds_and_seeds(tiny_data, tmp_path):
    first = sorted(read_manifest(tiny_data.casme2)["subject"])[0]
    overrides = [
        "name=abl",
        f"out_dir='{tmp_path}'",
        f"data.cache_dir='{tiny_data.cache_dir}'",
        f"data.manifests=['{tiny_data.casme2}']",
        "seeds=[1,2]",
        "generation.max_explanation_tokens=12",
        "explain=false,true",
    ]
    out_dir, text = run_ablation(CONFIG, overrides, [first], progress=False)
    assert out_dir == tmp_path / "abl_ablate_explain"
    runs = [tmp_path / "abl_explain_false", tmp_path / "abl_explain_true"]
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
    assert table["value"].tolist() == [False, True]
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert table["binary_f1_mean"][0] == pytest.approx(summary["metrics"]["pooled_binary_f1"])
    threshold_f1 = summary["metrics"]["binary_f1_train_threshold"]
    assert table["train_threshold_f1"][0] == pytest.approx(threshold_f1)
    assert "training thresholds" in text and f"| {threshold_f1:.3f} |" in text
    assert "| false |" in text and "(reference)" in text and "Explanations" in text
    assert (out_dir / "ablation.md").read_text() == text
    # The paired comparison: one subject x two seeds, from the two runs' own predictions.
    record = json.loads((out_dir / "ablation.json").read_text())
    paired = record["settings"][1]["paired"]["binary_f1"]
    aus = infos[0]["aus"]
    units = [subject_metrics(pd.read_csv(run / "predictions.csv"), aus) for run in runs]
    expected = (units[1]["binary_f1"] - units[0]["binary_f1"]).dropna()
    assert paired["n_units"] == len(expected) and paired["n_subjects"] == 1
    assert paired["mean"] == pytest.approx(expected.mean())
    assert record["settings"][0]["paired"] == {}
    assert table["train_minutes"][0] > 0
