import pytest

from au_llm.assets import SMOLLM2, AssetError
from au_llm.config import LLMConfig
from au_llm.model import smollm2
from au_llm.model.llm import load_base_llm, load_tokenizer


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
