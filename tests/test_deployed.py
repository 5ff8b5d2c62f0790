"""A model folder: save -> load gives the same model and settings; version-3 folders still load."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from au_llm.config import load_config
from au_llm.deployed import DeployedModel, InferenceConfig, load_deployed, save_deployed
from au_llm.model.checkpoint import build_model
from au_llm.recipes.cli import main
from tests.model import clips, one_torch_thread, tiny_model_config, tiny_spec

EXPERIMENT = [
    "generation.max_answer_tokens=40",
    "generation.constrained=true",
    "eval.threshold_policy=train",
    "train.batch_size=5",
    "train.device=cpu",
    "sampling.test_strategy=onset_apex",
    "preprocess.align=frame",
    "preprocess.size=48",
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[DeployedModel, Path, dict]:
    """A deployed tiny model (AUs 1..3), its folder and the experiment recorded beside it."""
    cfg = load_config(None, EXPERIMENT)
    with one_torch_thread():
        model, processor = build_model(tiny_spec(tiny_model_config(reader="none"), 3), seed=0)
    inference = InferenceConfig.from_sections(
        cfg.preprocess,
        cfg.sampling,
        cfg.train,
        cfg.eval,
        cfg.generation,
        thresholds=[0.3, 0.5, 0.7],
        clip_seconds=0.25,
    )
    deployed = DeployedModel(model.eval(), processor, inference)
    folder = tmp_path_factory.mktemp("deployed") / "model"
    save_deployed(deployed, folder, cfg.to_dict(), {"train_clips": 4})
    return deployed, folder, cfg.to_dict()


def test_inference_settings_come_from_the_training_sections(saved):
    deployed, _, _ = saved
    inference = deployed.inference
    assert (inference.batch_size, inference.frame_sampling, inference.device) == (
        5,
        "onset_apex",
        "cpu",
    )
    assert inference.preprocess.align == "frame" and inference.preprocess.size == 48
    assert inference.threshold_policy == "train"
    assert deployed.aus == [1, 2, 3] and list(deployed.thresholds) == [0.3, 0.5, 0.7]
    oracle = load_config(None, ["eval.threshold_policy=test-oracle"])
    recorded = InferenceConfig.from_sections(
        oracle.preprocess,
        oracle.sampling,
        oracle.train,
        oracle.eval,
        oracle.generation,
        thresholds=[0.5],
        clip_seconds=1.0,
    )
    assert recorded.threshold_policy == "fixed"  # no test set outside a protocol
    val = load_config(None, ["eval.threshold_policy=val", "train.val_fraction=0.3"])
    sections = (val.preprocess, val.sampling, val.train, val.eval, val.generation)
    chosen = InferenceConfig.from_sections(*sections, thresholds=[0.4], clip_seconds=1.0)
    assert chosen.threshold_policy == "val"


def test_save_then_load_gives_the_same_model_and_settings(saved):
    deployed, folder, _ = saved
    info = json.loads((folder / "model.json").read_text())
    assert info["version"] == 4 and info["extra"]["train_clips"] == 4
    loaded = load_deployed(folder)
    assert loaded.inference == deployed.inference and loaded.spec == deployed.spec
    x = clips(2, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), deployed.model(x), rtol=0, atol=0)


def _as_version_3(folder: Path, target: Path, inference: InferenceConfig) -> None:
    """``folder`` rewritten as the previous format wrote it: settings only in the experiment."""
    target.mkdir()
    for path in folder.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    info = json.loads((folder / "model.json").read_text())
    info["version"] = 3
    info["extra"] = {"thresholds": inference.thresholds, "clip_seconds": inference.clip_seconds}
    (target / "model.json").write_text(json.dumps(info))
    experiment = json.loads((folder / "config.json").read_text())  # the key names it had then
    experiment["preprocess"]["mode"] = experiment["preprocess"].pop("align")
    experiment["eval"]["threshold"] = experiment["eval"].pop("threshold_policy")
    (target / "config.json").write_text(json.dumps(experiment))


def test_a_version_3_folder_loads_with_settings_converted_from_its_experiment(saved, tmp_path):
    deployed, folder, _ = saved
    _as_version_3(folder, tmp_path / "old", deployed.inference)
    loaded = load_deployed(tmp_path / "old")
    assert loaded.inference == deployed.inference and loaded.spec == deployed.spec
    x = clips(2, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), deployed.model(x), rtol=0, atol=0)


def _with_old_model_section(model: dict, generation: dict) -> dict:
    """A model section as au-llm wrote it while it held loss weights and decoding settings."""
    text = {**model["text"], "weight": 1.0, "linear_weight": 1.0, "format_weights": []}
    text |= {"max_new_tokens": generation["max_answer_tokens"]}
    text |= {"constrained": generation["constrained"], "first_format_epochs": 0}
    explain = {"weight": 0.0, "max_new_tokens": generation["max_explanation_tokens"]}
    return {**model, "text": text, "explain": explain | {"stop_repeat": generation["stop_repeat"]}}


def test_a_folder_with_decoding_settings_in_its_model_section_loads_the_same(saved, tmp_path):
    deployed, folder, _ = saved
    assert deployed.inference.generation.constrained  # not the default: the test can fail
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    info = json.loads((old / "model.json").read_text())
    generation = info["extra"]["inference"].pop("generation")
    info["spec"]["model"] = _with_old_model_section(info["spec"]["model"], generation)
    (old / "model.json").write_text(json.dumps(info))
    loaded = load_deployed(old)
    assert loaded.inference == deployed.inference and loaded.spec == deployed.spec
    # version 3 kept every setting in the experiment, the model section in its old keys too
    _as_version_3(folder, tmp_path / "v3", deployed.inference)
    experiment = json.loads((tmp_path / "v3" / "config.json").read_text())
    generation = experiment.pop("generation")
    experiment["model"] = _with_old_model_section(experiment["model"], generation)
    (tmp_path / "v3" / "config.json").write_text(json.dumps(experiment))
    meta = json.loads((tmp_path / "v3" / "model.json").read_text())
    meta["spec"]["model"] = _with_old_model_section(meta["spec"]["model"], generation)
    (tmp_path / "v3" / "model.json").write_text(json.dumps(meta))
    loaded = load_deployed(tmp_path / "v3")
    assert loaded.inference == deployed.inference and loaded.spec == deployed.spec


def test_settings_that_do_not_fit_the_model_are_refused_naming_the_file(saved, tmp_path):
    deployed, folder, experiment = saved
    _as_version_3(folder, tmp_path / "short", deployed.inference)
    meta = tmp_path / "short" / "model.json"
    info = json.loads(meta.read_text())
    info["extra"]["thresholds"] = [0.5]
    meta.write_text(json.dumps(info))
    with pytest.raises(ValueError, match=rf"{meta}: expected 3 thresholds, got 1"):
        load_deployed(tmp_path / "short")
    sampling = {k: v for k, v in experiment["sampling"].items() if k != "test_strategy"}
    bad = {**experiment, "sampling": {**sampling, "test": "sideways"}}  # as version 3 named it
    _as_version_3(folder, tmp_path / "bad", deployed.inference)
    (tmp_path / "bad" / "config.json").write_text(json.dumps(bad))
    with pytest.raises(
        ValueError, match=r"bad/config.json: not a trained model's settings.*sideways"
    ):
        load_deployed(tmp_path / "bad")


@pytest.mark.parametrize(("bf16", "precision"), [(True, "auto"), (False, "fp32")])
def test_a_version_3_folder_that_records_train_bf16_loads(saved, tmp_path, bf16, precision):
    deployed, folder, _ = saved
    _as_version_3(folder, tmp_path / "old", deployed.inference)
    experiment = json.loads((tmp_path / "old" / "config.json").read_text())
    del experiment["train"]["precision"]
    experiment["train"]["bf16"] = bf16  # as the folders of earlier versions wrote it
    (tmp_path / "old" / "config.json").write_text(json.dumps(experiment))
    loaded = load_deployed(tmp_path / "old")
    assert loaded.inference == deployed.inference and loaded.model.precision == "fp32"


def _overwrite_middle(path: Path, n_bytes: int = 64) -> None:
    """Overwrite ``n_bytes`` in the middle of a safetensors file, its header left intact."""
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    middle = header + (len(data) - header) // 2
    data[middle : middle + n_bytes] = b"\xff" * n_bytes
    path.write_bytes(bytes(data))


def test_damaged_weights_are_refused_naming_the_file_and_predict_exits_2(
    saved, tiny_data, tmp_path, capsys
):
    _, folder, _ = saved
    damaged = Path(shutil.copytree(folder, tmp_path / "damaged"))
    weights = damaged / "weights.safetensors"
    _overwrite_middle(weights)
    with pytest.raises(ValueError, match=rf"{weights}: sha256 \w+ differs from the \w+ recorded"):
        load_deployed(damaged)
    args = ["predict", "--model", damaged, "--input", tiny_data.casme2, "--out", tmp_path / "p.csv"]
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert f"au-llm predict: error: {weights}: sha256" in err and "Traceback" not in err
    assert not (tmp_path / "p.csv").exists()


def test_a_folder_without_a_recorded_hash_loads_with_a_warning_unless_its_weights_are_nan(
    saved, tmp_path, caplog
):
    deployed, folder, _ = saved
    old = Path(shutil.copytree(folder, tmp_path / "old"))
    meta = old / "model.json"
    info = json.loads(meta.read_text())
    del info["files_sha256"]
    meta.write_text(json.dumps(info))
    with caplog.at_level(logging.WARNING):
        loaded = load_deployed(old)
    assert "records no sha256 of it" in caplog.text and "cannot be verified" in caplog.text
    x = clips(2, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), deployed.model(x), rtol=0, atol=0)
    state = load_file(old / "weights.safetensors")
    name = sorted(state)[0]
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, old / "weights.safetensors")
    with pytest.raises(ValueError, match=rf"weights.safetensors: 1 tensor\(s\) hold NaN .*{name}"):
        load_deployed(old)
