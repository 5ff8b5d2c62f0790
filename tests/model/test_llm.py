import pytest
import torch

from au_llm.config_model import LLMConfig, LoraConfig, TinyLLMConfig
from au_llm.model.llm import (
    ByteTokenizer,
    attach_lora,
    load_base_llm,
    lora_parameters,
    reset_lora,
    weights_sha256,
)

TINY = LLMConfig(tiny=TinyLLMConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1))


def test_the_byte_tokenizer_round_trips_any_text():
    tokenizer = ByteTokenizer(300)
    text = "AU12: lip corner puller, é"
    ids = tokenizer.encode(text)
    assert ids[0] == tokenizer.bos_id and tokenizer.encode(text, False) == ids[1:]
    assert tokenizer.decode([*ids, tokenizer.eos_id, 999]) == text
    with pytest.raises(ValueError, match="vocab_size 100 < 259"):
        ByteTokenizer(100)


def test_the_tiny_base_llm_is_frozen_and_the_same_in_every_load():
    first, second = load_base_llm(TINY), load_base_llm(TINY)
    assert first.identity == second.identity and first.identity["seed"] == 0
    assert weights_sha256(first.model) == weights_sha256(second.model)
    assert first.hidden_size == 32 and not any(p.requires_grad for p in first.model.parameters())
    other = LLMConfig(tiny=TinyLLMConfig(hidden_size=32, num_layers=1, num_heads=2, seed=1))
    assert weights_sha256(load_base_llm(other).model) != weights_sha256(first.model)


def test_no_base_llm_for_source_none_and_a_missing_path_is_named(tmp_path):
    with pytest.raises(ValueError, match="has no base LLM"):
        load_base_llm(LLMConfig(source="none"))
    with pytest.raises(FileNotFoundError, match=r"nowhere is not a directory"):
        load_base_llm(LLMConfig(source="path", path=str(tmp_path / "nowhere")))


def test_lora_starts_as_the_identity_and_only_its_weights_train():
    base = load_base_llm(TINY).model
    ids = torch.tensor([[1, 40, 41, 42]])
    before = base(input_ids=ids).logits
    attach_lora(base, LoraConfig(r=4, alpha=8, dropout=0.0))
    trainable = [p for p in base.parameters() if p.requires_grad]
    adapters = lora_parameters(base)
    assert trainable and {id(p) for p in trainable} == {id(p) for p in adapters}
    assert all(p.dtype == torch.float32 for p in adapters)
    torch.testing.assert_close(base(input_ids=ids).logits, before)
    with torch.no_grad():
        for param in adapters:
            param.add_(0.5)
    assert not torch.allclose(base(input_ids=ids).logits, before)
    reset_lora(base)
    torch.testing.assert_close(base(input_ids=ids).logits, before)


def test_lora_on_modules_the_model_lacks_names_them():
    base = load_base_llm(TINY).model
    with pytest.raises(ValueError, match=r"target_modules = \['nothing_here'\]"):
        attach_lora(base, LoraConfig(target_modules=["nothing_here"]))
