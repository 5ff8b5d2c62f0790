import json

import numpy as np
import pytest
import torch

from au_llm.assets import SMOLLM2, AssetError, cached_path
from au_llm.config import LLMConfig
from au_llm.model import smollm2
from au_llm.model.llm import load_base_llm, load_tokenizer
from tests.tolerance import assert_near


def test_missing_package_names_the_hash_and_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("AU_LLM_CACHE", str(tmp_path))
    monkeypatch.setattr("au_llm.assets.find_distribution", lambda *a, **k: None)
    with pytest.raises(AssetError) as info:
        smollm2.smollm2_dir()
    message = str(info.value)
    assert SMOLLM2.sha256 in message and "python -m au_llm.assets --install smollm2" in message


def test_a_wrong_file_is_refused_before_conversion(monkeypatch, tmp_path):
    fake = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    fake.write_bytes(b"not a model")
    monkeypatch.setenv("AU_LLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("au_llm.assets.locate_in_distribution", lambda *a, **k: fake)
    monkeypatch.setattr(smollm2, "_convert", lambda *a: pytest.fail("must not convert"))
    with pytest.raises(AssetError, match="b179c95"):
        smollm2.smollm2_dir()


def _gguf_tensor(reader, name: str, rows: int | None = None) -> torch.Tensor:
    """A tensor of the GGUF file dequantised by the ``gguf`` package itself (first ``rows``)."""
    import gguf

    tensor = next(t for t in reader.tensors if t.name == name)
    data = tensor.data if rows is None else tensor.data[:rows]
    values = np.asarray(gguf.quants.dequantize(data, tensor.tensor_type))
    return torch.tensor(values, dtype=torch.float64)


def test_the_converted_smollm2_holds_the_gguf_values():
    """The conversion (transformers' GGUF reader, then saved) against the GGUF file read directly.

    Seconds instead of the slow test's full load: the installed file's architecture and a few
    tensors of the first and the last layer, each as the ``gguf`` package dequantises it. Q and K
    projections are stored permuted for rotary embeddings in GGUF, so their rows are compared as
    sets. ``make test``'s install step converts the model once, so the folder is there.
    """
    import gguf
    from safetensors import safe_open

    try:
        folder, path = smollm2.smollm2_dir(), cached_path(SMOLLM2)
    except AssetError as error:
        pytest.skip(f"SmolLM2 is not installed here: {error}")
    reader = gguf.GGUFReader(path)

    def field(key: str) -> int:
        value = reader.fields[key]
        return int(value.parts[value.data[0]][0])

    config = json.loads((folder / "config.json").read_text())
    assert config["num_hidden_layers"] == field("llama.block_count") == 30
    assert config["hidden_size"] == field("llama.embedding_length") == 576
    assert config["num_attention_heads"] == field("llama.attention.head_count")
    assert config["num_key_value_heads"] == field("llama.attention.head_count_kv")
    assert config["tie_word_embeddings"] and config["vocab_size"] == 49152
    pairs = {"output_norm.weight": "model.norm.weight"}
    for layer in (0, 29):
        hf = f"model.layers.{layer}."
        pairs |= {
            f"blk.{layer}.attn_norm.weight": hf + "input_layernorm.weight",
            f"blk.{layer}.ffn_down.weight": hf + "mlp.down_proj.weight",
            f"blk.{layer}.ffn_gate.weight": hf + "mlp.gate_proj.weight",
            f"blk.{layer}.attn_v.weight": hf + "self_attn.v_proj.weight",
            f"blk.{layer}.attn_output.weight": hf + "self_attn.o_proj.weight",
        }
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        for gguf_name, hf_name in pairs.items():
            converted = weights.get_tensor(hf_name)
            assert_near(converted, _gguf_tensor(reader, gguf_name), terms=2, name=hf_name)
        rows = weights.get_tensor("model.embed_tokens.weight")[:64]
        assert_near(rows, _gguf_tensor(reader, "token_embd.weight", 64), terms=2, name="embed")
        for kind in ("q", "k"):
            converted = weights.get_tensor(f"model.layers.0.self_attn.{kind}_proj.weight")
            stored = _gguf_tensor(reader, f"blk.0.attn_{kind}.weight").float()
            assert sorted(map(tuple, converted.tolist())) == sorted(map(tuple, stored.tolist()))


@pytest.mark.slow
def test_built_in_smollm2_loads_and_speaks():
    cfg = LLMConfig(source="smollm2")
    base, tokenizer = load_base_llm(cfg), load_tokenizer(cfg)
    assert base.hidden_size == 576 and base.identity["source"] == "smollm2"
    ids = tokenizer.encode("The capital of France is")
    assert ids[0] != tokenizer.eos_id  # no BOS token is added
    import torch

    tokens = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(3):
            nxt = base.model(tokens).logits[0, -1].argmax()
            tokens = torch.cat([tokens, nxt.view(1, 1)], dim=1)
    assert "Paris" in tokenizer.decode(tokens[0, len(ids) :].tolist())
