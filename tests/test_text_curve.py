"""bench/text_curve.py (held-out text scores against epochs) and train_model's epoch callback."""

import importlib.util
from pathlib import Path

import numpy as np

import au_llm.training
from au_llm.data.manifest import read_manifest
from au_llm.model.checkpoint import build_model
from au_llm.model.spec import ModelSpec
from au_llm.preprocess.cache import ClipCache
from au_llm.preprocess.dataset import ClipDataset
from au_llm.preprocess.run import preprocess_manifest
from au_llm.recipes.demo_text import split_subjects, text_config, text_config_name
from tests.conftest import tiny_config

BENCH = Path(__file__).resolve().parents[1] / "bench" / "text_curve.py"


def _bench():
    spec = importlib.util.spec_from_file_location("text_curve", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _curve_config(tiny_data, tmp_path, *extra, explain=False):
    train, test = split_subjects(tiny_data.casme2, tmp_path)
    overrides = [
        "model.llm.source=tiny",
        "train.precision=fp32",
        "preprocess.size=32",
        "preprocess.workers=0",
        "model.text.formats=[list,json]",
        "generation.max_answer_tokens=8",
        "generation.max_explanation_tokens=8",
        *extra,
    ]
    bench = _bench()
    config = bench.CONFIG.with_name(text_config_name(explain=explain))
    return bench, text_config(config, tmp_path, train, test, overrides)


def test_train_model_calls_back_after_every_epoch_in_order(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, "cb", "loso", "train.epochs=3")
    manifest = read_manifest(tiny_data.casme2)
    preprocess_manifest(manifest, ClipCache(tiny_data.cache_dir, cfg.preprocess), progress=False)
    aus = [1, 2, 4, 7, 12, 14, 15, 17]
    cache = ClipCache(tiny_data.cache_dir, cfg.preprocess)
    train_set = ClipDataset(manifest, cache, aus, 4, "random_end", seed=1)
    model, processor = build_model(ModelSpec(cfg.model, tuple(aus), 1, 4, 32), seed=1)
    seen = []

    def on_epoch(epoch):
        seen.append((epoch, model.training))
        model.eval()  # evaluating inside the callback must not keep later epochs from training

    result = au_llm.training.train_model(
        model, processor, train_set, cfg.train, seed=1, progress=False, on_epoch=on_epoch
    )
    assert seen == [(0, True), (1, True), (2, True)]
    assert len(result.train_loss) == 3 and np.isfinite(result.train_loss).all()


def test_curve_scores_every_k_epochs_and_the_last(tiny_data, tmp_path):
    bench, cfg = _curve_config(tiny_data, tmp_path, "train.epochs=3")
    saved = []
    curve = bench.run_curve(cfg, tmp_path, every=2, saved=lambda points: saved.append(len(points)))
    n_test = len(read_manifest(tmp_path / "test.csv"))
    assert [point["epoch"] for point in curve["points"]] == [2, 3] and saved == [1, 2]
    for point in curve["points"]:
        assert set(point["formats"]) == {"list", "json"}
        assert all(v["n_answers"] == n_test for v in point["formats"].values())
        assert 1 <= point["formats"]["list"]["distinct_answers"] <= n_test
        assert point["reliance"]["list"]["n_clips"] == n_test
        assert "explanation_f1" not in point
    assert len(curve["train_loss"]) == 3
    assert "list F1" in bench.curve_line(2, curve["points"][0])


def test_curve_trains_the_first_format_alone_first_and_scores_explanations(
    tiny_data, tmp_path, monkeypatch
):
    bench, cfg = _curve_config(
        tiny_data, tmp_path, "train.epochs=2", "train.first_format_epochs=1", explain=True
    )
    drawn = []
    original = au_llm.training.batch_formats

    def spy(formats, weights, step, n, *, first_only):
        chosen = original(formats, weights, step, n, first_only=first_only)
        drawn.append(chosen)
        return chosen

    monkeypatch.setattr(au_llm.training, "batch_formats", spy)
    curve = bench.run_curve(cfg, tmp_path, every=1, reliance=False)
    steps = len(drawn) // 2
    assert steps >= 1 and len(drawn) == 2 * steps
    assert all(set(chosen) == {"list"} for chosen in drawn[:steps])
    assert {"json"} <= {name for chosen in drawn[steps:] for name in chosen}
    last = curve["points"][-1]
    assert "explanation_f1" in last and len(last["answers"]["explanation"]) == len(last["clips"])
    assert sum(last["explanation_kinds"].values()) == len(read_manifest(tmp_path / "test.csv"))
    assert "reliance" not in last
