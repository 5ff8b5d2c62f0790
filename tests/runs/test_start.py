"""Starting a run: atomic create-or-compare of config.yaml, nothing written before validation."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from au_llm.config import load_config
from au_llm.recipes.experiment import open_run
from au_llm.recipes.run_config import saved_config, start_run
from tests.conftest import CONFIG_DIR, tiny_config
from tests.model import save_local_hf_model

TRIALS = 8


@pytest.fixture(autouse=True)
def _quick_environment(monkeypatch):
    """env.json's content plays no part in the race; skip its git call and imports."""
    monkeypatch.setattr("au_llm.runs.run.environment", lambda: {})


def _config(out_dir: Path, epochs: int, *extra: str):
    overrides = [f"out_dir='{out_dir}'", "name=race", f"train.epochs={epochs}", *extra]
    return load_config(CONFIG_DIR / "tiny_cpu_loso.yaml", overrides)


def _start(cfg, barrier, results) -> None:
    """Start the run of ``cfg`` once every racer is ready; record the outcome."""
    barrier.wait()
    try:
        start_run(cfg)
        results.put((cfg.train.epochs, "started"))
    except ValueError as exc:
        results.put((cfg.train.epochs, str(exc)))


def _saved_epochs(out_dir: Path) -> int:
    return load_config(out_dir / "race" / "config.yaml", saved=True).train.epochs


def _check_one_started(outcomes: list[tuple[int, str]], out_dir: Path) -> None:
    started = [epochs for epochs, outcome in outcomes if outcome == "started"]
    assert len(started) == 1, outcomes
    refused = [outcome for epochs, outcome in outcomes if outcome != "started"]
    assert all("different config" in r and "train.epochs:" in r for r in refused), refused
    assert _saved_epochs(out_dir) == started[0]


def test_processes_racing_two_configs_into_one_folder_never_both_start(tmp_path):
    context = multiprocessing.get_context("fork")
    for trial in range(TRIALS):
        out_dir = tmp_path / str(trial)
        barrier, results = context.Barrier(2), context.Queue()
        racers = [
            context.Process(target=_start, args=(_config(out_dir, epochs), barrier, results))
            for epochs in (2, 5)
        ]
        for racer in racers:
            racer.start()
        outcomes = [results.get(timeout=120) for _ in racers]
        for racer in racers:
            racer.join(timeout=60)
            assert racer.exitcode == 0
        _check_one_started(outcomes, out_dir)


def test_threads_racing_through_run_start_never_mix_configs(tmp_path):
    class Results(list):
        put = list.append

    for trial in range(TRIALS):
        out_dir = tmp_path / str(trial)
        barrier, results = threading.Barrier(3), Results()
        configs = [_config(out_dir, epochs) for epochs in (2, 5, 2)]
        racers = [threading.Thread(target=_start, args=(c, barrier, results)) for c in configs]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        started = sorted(e for e, outcome in results if outcome == "started")
        # Either both epochs=2 racers share the run, or the epochs=5 one alone holds it.
        assert started in ([2, 2], [5]), results
        assert _saved_epochs(out_dir) == started[0]


def test_a_second_config_is_refused_naming_every_differing_key(tmp_path):
    start_run(_config(tmp_path, 2))
    with pytest.raises(ValueError, match="different config") as caught:
        start_run(_config(tmp_path, 5, "train.lr=0.5"))
    assert "train.epochs: 2 -> 5" in str(caught.value)
    assert "train.lr: 0.001 -> 0.5" in str(caught.value)
    assert _saved_epochs(tmp_path) == 2
    rejoined = start_run(_config(tmp_path, 2, "train.num_threads=2", "preprocess.workers=1"))
    assert saved_config(rejoined).train.num_threads == 2, "a runtime setting alone may differ"
    assert load_config(tmp_path / "race" / "config.yaml", saved=True).train.num_threads == 2
    assert not list((tmp_path / "race").glob(".*.tmp"))


def test_a_run_failing_validation_writes_nothing_and_the_corrected_rerun_starts(
    tiny_data, tmp_path
):
    """A manifest of a dataset without a default AU set and no ``data.aus``."""
    mine = tmp_path / "mine.csv"
    header, *rows = tiny_data.casme2.read_text().splitlines()
    mine.write_text("\n".join([header, *(row.replace("casme2,", "mine,", 1) for row in rows)]))
    cfg = tiny_config(tiny_data, tmp_path / "runs", "mine", "loso", f"data.manifests=['{mine}']")
    with pytest.raises(ValueError, match=r"\['mine'\] have no default AU set; set data.aus"):
        open_run(cfg, 1, progress=False)
    assert not (tmp_path / "runs").exists()
    fixed = tiny_config(
        tiny_data, tmp_path / "runs", "mine", "loso", f"data.manifests=['{mine}']", "data.aus=[1,2]"
    )
    opened = open_run(fixed, 1, progress=False)
    assert opened.run.aus() == [1, 2]


def test_a_run_whose_llm_tokenizer_cannot_be_used_writes_nothing_and_the_corrected_rerun_starts(
    tiny_data, tmp_path
):
    """``model.llm.chat_template=on`` for an LLM folder without a template: refused at start."""
    folder = tmp_path / "llm"
    save_local_hf_model(folder, layers=1)
    llm = ["model.llm.source=path", f"model.llm.path='{folder}'"]
    cfg = tiny_config(
        tiny_data, tmp_path / "runs", "llm", "loso", *llm, "model.llm.chat_template=on"
    )
    with pytest.raises(ValueError, match="chat_template = on, but the tokenizer .* has no chat"):
        open_run(cfg, 1, progress=False)
    assert not (tmp_path / "runs").exists()
    fixed = tiny_config(
        tiny_data, tmp_path / "runs", "llm", "loso", *llm, "model.llm.chat_template=off"
    )
    assert open_run(fixed, 1, progress=False).run.root == (tmp_path / "runs" / "llm").resolve()


def test_a_renamed_run_folder_resumes_under_its_new_name(tmp_path):
    """``au-llm status`` prints ``name=<folder>`` for a folder renamed since its run started."""
    start_run(_config(tmp_path, 2))
    (tmp_path / "race").rename(tmp_path / "renamed")
    assert start_run(_config(tmp_path, 2, "name=renamed")).root == (tmp_path / "renamed").resolve()
    assert load_config(tmp_path / "renamed" / "config.yaml", saved=True).name == "renamed"
    with pytest.raises(ValueError, match="train.epochs: 2 -> 5"):
        start_run(_config(tmp_path, 5, "name=renamed"))
