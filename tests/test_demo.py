import json
import time
from importlib import resources
from pathlib import Path

import pytest

from au_llm.demo import CONFIG_DIR, DEMO_CONFIGS, demo_config, run_demo


def test_no_llm_flag_gives_the_ablation_on_equal_terms(tmp_path):
    manifests = {"casme2": tmp_path / "c.csv", "samm": tmp_path / "s.csv"}
    for name in DEMO_CONFIGS:
        with_llm = demo_config(CONFIG_DIR / name, tmp_path, manifests, no_llm=False)
        without = demo_config(CONFIG_DIR / name, tmp_path, manifests, no_llm=True)
        assert with_llm.model.llm.source == "tiny" and without.model.llm.source == "none"
        assert without.name == with_llm.name + "_no_llm"
        assert without.train == with_llm.train and without.model.backbone == with_llm.model.backbone
        assert without.data == with_llm.data


def test_small_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    runs = run_demo(tmp_path, subjects=3, clips_per_subject=4)
    assert [r.name for r in runs] == ["demo_casme2_loso", "demo_casme2_to_samm"]
    for run in runs:
        for name in ("predictions.csv", "report.md", "f1_per_au.png", "summary.json"):
            assert (run / name).is_file()
    out = capsys.readouterr().out
    assert "alwaysPos" in out and str(runs[0]) in out
    start = time.perf_counter()
    run_demo(tmp_path, subjects=3, clips_per_subject=4)
    assert time.perf_counter() - start < 30, "a finished demo re-run must only rebuild reports"


def test_demo_configs_load_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert CONFIG_DIR.is_absolute()
    assert Path(str(resources.files("au_llm.configs"))) == CONFIG_DIR
    manifests = {"casme2": Path("c.csv"), "samm": Path("s.csv")}
    names = [
        demo_config(CONFIG_DIR / name, Path("out"), manifests, False).name for name in DEMO_CONFIGS
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
