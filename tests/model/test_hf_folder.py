"""A user's LLM (local folder or GGUF file) that is not what it claims is refused, named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from au_llm.config import LLMConfig
from au_llm.model.llm import load_base_llm, load_tokenizer, weights_sha256
from tests.model import drop_weights, one_torch_thread, save_local_hf_model, save_tiny_gguf


@pytest.fixture(autouse=True)
def _one_thread_and_own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("AU_LLM_CACHE", str(tmp_path / "cache"))  # GGUF conversions land here
    with one_torch_thread():
        yield


def _path(folder: Path) -> LLMConfig:
    return LLMConfig(source="path", path=str(folder))


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_a_folder_without_the_weights_of_a_layer_is_refused_naming_them(tmp_path, arch):
    folder = tmp_path / arch
    save_local_hf_model(folder, layers=2, arch=arch)
    assert load_base_llm(_path(folder)).hidden_size == 32  # complete: loads
    drop_weights(folder, "model.layers.0.")
    with pytest.raises(
        ValueError,
        match=rf"{folder} is not a complete model: \d+ weights missing from its files \(they "
        r"would be random\): model.layers.0.input_layernorm.weight, model.layers.0.mlp",
    ):
        load_base_llm(_path(folder))


def test_a_folder_whose_weights_hold_nan_is_refused_naming_them(tmp_path):
    """Damaged values would otherwise train to a NaN loss blamed on the learning rate."""
    from safetensors.torch import load_file

    folder = tmp_path / "llm"
    save_local_hf_model(folder, layers=1)
    state = load_file(folder / "model.safetensors")
    state["model.layers.0.mlp.up_proj.weight"][0, 0] = float("nan")
    drop_weights(folder, "none", extra=state)
    with pytest.raises(
        ValueError,
        match=rf"{folder}: 1 weights hold NaN or infinite values "
        r"\(model.layers.0.mlp.up_proj.weight\): its files are damaged",
    ):
        load_base_llm(_path(folder))


def test_tensors_the_architecture_does_not_have_are_refused(tmp_path):
    folder = tmp_path / "llm"
    save_local_hf_model(folder, layers=1)
    drop_weights(folder, "none", extra={"model.layers.7.mlp.up_proj.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match=r"1 tensors in its files that the architecture does not"):
        load_base_llm(_path(folder))


def test_tied_embeddings_load_from_the_one_tensor_their_files_hold(tmp_path):
    folder = tmp_path / "tied"
    save_local_hf_model(folder, layers=1, arch="llama", tie_word_embeddings=True)
    model = load_base_llm(_path(folder)).model
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    drop_weights(folder, "model.embed_tokens.")
    with pytest.raises(ValueError, match=r"missing .*: lm_head.weight, model.embed_tokens.weight"):
        load_base_llm(_path(folder))


def test_a_gguf_file_converts_and_one_without_a_layer_is_refused(tmp_path):
    good = tmp_path / "good.gguf"
    save_tiny_gguf(good)
    base = load_base_llm(_path(good))
    assert base.hidden_size == 32 and load_tokenizer(_path(good)).eos_id == 2
    assert weights_sha256(base.model) == weights_sha256(load_base_llm(_path(good)).model)
    partial = tmp_path / "partial.gguf"
    save_tiny_gguf(partial, drop=("blk.0.",))
    with pytest.raises(ValueError, match=rf"{partial} is not a complete model: 9 weights missing"):
        load_tokenizer(_path(partial))
    assert not list((tmp_path / "cache").glob("hf-*/*partial*"))  # nothing half-converted kept


@pytest.mark.parametrize("size", [100, 4000, 20000])
def test_a_truncated_gguf_file_is_named(tmp_path, size):
    whole = tmp_path / "whole.gguf"
    save_tiny_gguf(whole)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole.read_bytes()[:size])
    with pytest.raises(ValueError, match=rf"cannot load a (tokenizer|causal LM) from {cut} "):
        load_tokenizer(_path(cut))


def test_a_vocabulary_smaller_than_the_tokenizers_is_refused_naming_both_sizes(tmp_path):
    folder = tmp_path / "small"
    save_local_hf_model(folder, layers=1, vocab_size=8)
    with pytest.raises(
        ValueError, match=rf"{folder}: the tokenizer has 18 tokens but the model's vocabulary .* 8"
    ):
        load_tokenizer(_path(folder))


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("tokenizer.json", "{}"),
        ("tokenizer.json", "[1, 2]"),
        ("tokenizer_config.json", json.dumps({"model_max_length": "long"})),
    ],
    ids=["tokenizer-without-keys", "tokenizer-a-list", "max-length-a-string"],
)
def test_malformed_tokenizer_files_are_named(tmp_path, name, text):
    folder = tmp_path / "llm"
    save_local_hf_model(folder, layers=1)
    (folder / name).write_text(text)
    with pytest.raises(ValueError, match=rf"cannot load a tokenizer from {re.escape(str(folder))}"):
        load_tokenizer(_path(folder))


def test_a_config_json_of_the_wrong_types_is_named(tmp_path):
    folder = tmp_path / "llm"
    save_local_hf_model(folder, layers=1)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": "wide"}))
    with pytest.raises(ValueError, match=rf"cannot load a causal LM from {folder} .*hidden_size"):
        load_base_llm(_path(folder))
