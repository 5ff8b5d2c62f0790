from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from au_llm.config import LLMConfig
from au_llm.model.checkpoint import build_model, load_checkpoint, save_checkpoint
from au_llm.model.llm import load_base_llm
from tests.model import clips, one_torch_thread, save_local_hf_model, tiny_model_config, tiny_spec


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _trained_model(cfg):
    model, processor = build_model(tiny_spec(cfg, 3), seed=2)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        model(clips(4)).sum().backward()
        optimizer.step()
    return model.eval(), processor


def test_save_then_load_gives_identical_outputs(tmp_path: Path) -> None:
    model, processor = _trained_model(tiny_model_config())
    x = clips(3, seed=1)
    with torch.no_grad():
        expected = model(x)
    cfg_dict = {"name": "demo", "train": {"lr": 0.01}}
    save_checkpoint(
        model, processor, cfg_dict, tmp_path / "ckpt", extra={"thresholds": [0.4, 0.5, 0.6]}
    )
    weights = load_file(tmp_path / "ckpt" / "weights.safetensors")
    base_keys = [k for k in weights if k.startswith("llm.") and "lora_" not in k]
    assert not base_keys and any("lora_B" in k for k in weights)
    assert any(k.endswith("bn1.running_mean") for k in weights)
    loaded, loaded_processor, info = load_checkpoint(tmp_path / "ckpt")
    assert not loaded.training
    assert loaded_processor.to_dict() == processor.to_dict()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)
    assert info["extra"] == {"thresholds": [0.4, 0.5, 0.6]} and info["config"] == cfg_dict
    assert loaded.spec == model.spec and loaded.spec.aus == (1, 2, 3)
    assert info["base_identity"] == model.base_identity


def test_none_ablation_round_trip(tmp_path: Path) -> None:
    model, processor = _trained_model(tiny_model_config(reader="none"))
    x = clips(2, seed=3)
    save_checkpoint(model, processor, {}, tmp_path)
    loaded, _, info = load_checkpoint(tmp_path)
    assert info["base_identity"] is None
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_mismatched_base_raises(tmp_path: Path) -> None:
    model, processor = build_model(tiny_spec(tiny_model_config(), 2), seed=0)
    save_checkpoint(model, processor, {}, tmp_path)
    meta_path = tmp_path / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["base_identity"]["config_sha256"] = "0" * 64  # trained on some other base
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="trained on base LLM .*0000.* loaded now is"):
        load_checkpoint(tmp_path)


def test_incomplete_checkpoint_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model.json missing"):
        load_checkpoint(tmp_path)


def test_local_path_model_round_trip_and_replaced_model(tmp_path: Path) -> None:
    model_dir = tmp_path / "llm"
    save_local_hf_model(model_dir, layers=1)
    cfg = tiny_model_config()
    cfg.llm = LLMConfig(source="path", path=str(model_dir), lora=cfg.llm.lora)
    model, processor = _trained_model(cfg)
    assert model.base_identity["path"] == str(model_dir.resolve())
    assert max(model.prompt_ids.tolist()) < 64
    x = clips(2)
    with torch.no_grad():
        expected = model(x)
    save_checkpoint(model, processor, {}, tmp_path / "ckpt")
    loaded, _, _ = load_checkpoint(tmp_path / "ckpt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)
    # the directory now holds a different model: its config hash no longer matches
    save_local_hf_model(model_dir, layers=2)
    with pytest.raises(ValueError, match="only fit the original base"):
        load_checkpoint(tmp_path / "ckpt")


def test_other_weights_at_the_same_path_are_refused(tmp_path: Path) -> None:
    model_dir = tmp_path / "llm"
    save_local_hf_model(model_dir, layers=1)
    cfg = tiny_model_config()
    cfg.llm = LLMConfig(source="path", path=str(model_dir), lora=cfg.llm.lora)
    model, processor = _trained_model(cfg)
    assert len(model.base_identity["weights_sha256"]) == 64
    save_checkpoint(model, processor, {}, tmp_path / "ckpt")
    save_local_hf_model(model_dir, layers=1, seed=1)  # same config, other weights
    with pytest.raises(ValueError, match="only fit the original base"):
        load_checkpoint(tmp_path / "ckpt")


def test_missing_model_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_base_llm(LLMConfig(source="path", path=str(tmp_path / "absent")))


def _damage(ckpt: Path, name: str, how: str) -> Path:
    path = ckpt / name
    data = path.read_bytes()
    damaged = {"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"\x80" * 64}
    path.write_bytes(damaged[how])
    return path


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage"])
@pytest.mark.parametrize("name", ["model.json", "weights.safetensors", "config.json"])
def test_a_damaged_model_file_is_an_error_naming_it(tmp_path: Path, name: str, how: str) -> None:
    save_checkpoint(*_trained_model(tiny_model_config(reader="none")), {"a": 1}, tmp_path / "ckpt")
    path = _damage(tmp_path / "ckpt", name, how)
    with pytest.raises(ValueError, match=rf"{path}: not a readable (JSON|weights) file"):
        load_checkpoint(tmp_path / "ckpt")


def test_a_model_json_of_another_shape_names_the_file(tmp_path: Path) -> None:
    save_checkpoint(*_trained_model(tiny_model_config(reader="none")), {}, tmp_path / "ckpt")
    meta_path = tmp_path / "ckpt" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps([meta]))
    with pytest.raises(ValueError, match=rf"{meta_path}: expected format"):
        load_checkpoint(tmp_path / "ckpt")
    del meta["base_identity"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"{meta_path}: KeyError"):
        load_checkpoint(tmp_path / "ckpt")


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_a_local_qwen2_or_llama_folder_trains_both_heads_with_group_rates(
    tmp_path: Path, arch: str
) -> None:
    from au_llm.losses import build_loss
    from au_llm.model.engine import generate_answers
    from au_llm.param_groups import parameter_groups
    from au_llm.training import batch_loss, make_optimizer

    model_dir = tmp_path / arch
    save_local_hf_model(model_dir, layers=1, arch=arch)
    cfg = tiny_model_config()
    cfg.llm = LLMConfig(source="path", path=str(model_dir), lora=cfg.llm.lora)
    cfg.head, cfg.text.formats = "both", ["list"]
    model, processor = build_model(tiny_spec(cfg, 3), seed=0)
    assert model.llm.config.model_type == arch
    groups = parameter_groups(model, lr=1e-2, lr_lora=1e-3)
    optimizer = make_optimizer(groups, name="adamw", lr=1e-2, weight_decay=0.01)
    labels = torch.tensor([[1, 0, 1], [0, 1, 0.0]])
    loss_fn = build_loss(labels.numpy())
    before = {k: v.clone() for k, v in model.trainable_state_dict().items() if "lora_B" in k}
    for step in range(2):
        optimizer.zero_grad()
        batch_loss(model, processor, clips(2), labels, loss_fn, step).backward()
        optimizer.step()
    after = model.trainable_state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the adapters learnt
    model.eval()
    with torch.no_grad():
        instruction, eos = processor.instruction_ids("list"), processor.eos_id
        tokens = model.get_visual_tokens(clips(2))
        answers = generate_answers(
            model, tokens, instruction, eos_id=eos, prompt_cache=None, max_new_tokens=4
        )
    assert len(answers) == 2 and all(max(a, default=0) < 64 for a in answers)
