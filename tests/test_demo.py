import json
import re
import time
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from au_llm.recipes.demo import CONFIG_DIR, DEMO_CONFIGS, demo_config, run_demo
from au_llm.recipes.demo_text import text_config_name


def test_no_llm_flag_gives_the_ablation_on_equal_terms(tmp_path):
    manifests = {"casme2": tmp_path / "c.csv", "samm": tmp_path / "s.csv"}
    for name in DEMO_CONFIGS:
        with_llm = demo_config(CONFIG_DIR / name, tmp_path, manifests, no_llm=False)
        without = demo_config(CONFIG_DIR / name, tmp_path, manifests, no_llm=True)
        assert with_llm.model.reader == "llm" and without.model.reader == "none"
        assert without.model.llm.source == with_llm.model.llm.source == "tiny"
        assert without.name == with_llm.name + "_no_llm"
        assert without.train == with_llm.train and without.model.backbone == with_llm.model.backbone
        assert without.data == with_llm.data


def test_small_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    runs = run_demo(tmp_path, subjects=3, clips_per_subject=4, text=False)
    assert [r.name for r in runs] == ["demo_casme2_loso", "demo_casme2_to_samm"]
    for run in runs:
        for name in ("predictions.csv", "report.md", "f1_per_au.png", "summary.json"):
            assert (run / name).is_file()
    out = capsys.readouterr().out
    assert "alwaysPos" in out and str(runs[0]) in out
    start = time.perf_counter()
    run_demo(tmp_path, subjects=3, clips_per_subject=4, text=False)
    assert time.perf_counter() - start < 30, "a finished demo re-run must only rebuild reports"


def test_demo_configs_load_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert CONFIG_DIR.is_absolute()
    assert Path(str(resources.files("au_llm.configs"))) == CONFIG_DIR
    manifests = {"casme2": Path("c.csv"), "samm": Path("s.csv")}
    names = [
        demo_config(CONFIG_DIR / name, Path("out"), manifests, no_llm=False).name
        for name in DEMO_CONFIGS
    ]
    assert names == ["demo_casme2_loso", "demo_casme2_to_samm"]


@pytest.mark.slow
def test_full_demo_learns_within_ten_minutes(tmp_path):
    start = time.perf_counter()
    loso, cross = run_demo(tmp_path)
    assert time.perf_counter() - start < 600
    for run in (loso, cross):
        summary = json.loads((run / "summary.json").read_text())["metrics"]
        assert summary["pooled_binary_f1"] >= 0.6
        assert summary["pooled_binary_f1"] >= summary["baseline_binary_f1"] + 0.2


def _tiny_text_config(tmp_path, explain=False):
    """The text step's config with the tiny random LLM, 1 epoch, 32x32 clips."""
    text = (CONFIG_DIR / text_config_name(explain=explain)).read_text()
    text = text.replace("source: smollm2", "source: tiny")
    text = text.replace("precision: auto", "precision: fp32")
    text = (
        re.sub(r"epochs: \d+", "epochs: 1", text)
        .replace("formats: [list]", "formats: [list, json]")
        .replace("size: 64", "size: 32")
    )
    text = text.replace("max_explanation_tokens: 128", "max_explanation_tokens: 8")
    assert "source: tiny" in text and "epochs: 1" in text and "max_explanation_tokens: 8" in text
    config = tmp_path / "text.yaml"
    config.write_text(text)
    return config


def test_text_step_holds_out_two_subjects_and_reports_every_format(tiny_data, tmp_path, capsys):
    from au_llm.data.manifest import read_manifest
    from au_llm.recipes.demo_text import run_text_demo

    scores = run_text_demo(_tiny_text_config(tmp_path), tmp_path, tiny_data.casme2)
    train = read_manifest(tmp_path / "text" / "train.csv")
    test = read_manifest(tmp_path / "text" / "test.csv")
    assert test["subject"].nunique() == 2 and not set(train["subject"]) & set(test["subject"])
    for mode in ("free", "constrained"):
        assert set(scores[mode]["formats"]) == {"list", "json"}
    constrained = scores["constrained"]["formats"]
    assert all(v["parse_failures"] == 0 for v in constrained.values() if v["n_answers"])
    out = capsys.readouterr().out
    assert "text:json" in out and "Example answers" in out
    assert "Reliance, format `list`" in out and "distinct" in out
    assert scores["reliance"]["list"]["n_clips"] == len(test)
    assert scores["free"]["formats"]["list"]["distinct_answers"] >= 1
    assert json.loads((tmp_path / "text" / "summary.json").read_text()) == scores


def test_text_step_with_explain_writes_and_scores_an_explanation_per_test_clip(
    tiny_data, tmp_path, capsys
):
    from au_llm.data.manifest import read_manifest
    from au_llm.recipes.demo_text import run_text_demo

    results = run_text_demo(_tiny_text_config(tmp_path, explain=True), tmp_path, tiny_data.casme2)
    folder = tmp_path / "text_explain"
    free = pd.read_csv(folder / "predictions_free.csv", keep_default_na=False)
    n_test = len(read_manifest(folder / "test.csv"))
    assert len(free) == results["explanations"]["n_explanations"] == n_test
    assert {"au_raw", "aus", "explanation"} <= set(free.columns)
    assert "explanation" not in pd.read_csv(folder / "predictions_constrained.csv").columns
    assert sum(results["explanations"]["kinds"].values()) == n_test
    out = capsys.readouterr().out
    assert out.count("Example explanation (") == 3
    assert json.loads((folder / "summary.json").read_text()) == results
    assert not (tmp_path / "text").exists()
