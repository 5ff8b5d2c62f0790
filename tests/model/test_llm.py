import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from au_llm.config_checks import ConfigError
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


def test_source_none_names_its_new_key_and_a_missing_path_is_named(tmp_path):
    with pytest.raises(ConfigError, match="source = 'none' was replaced by model.reader = none"):
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


_EVIL = """
from pathlib import Path
Path({marker!r}).write_text("model code ran")
"""


def _remote_code_folder(tmp_path: Path, where: str) -> tuple[Path, Path]:
    """A model folder whose ``where`` file asks for its own code, which leaves a marker if run."""
    folder, marker = tmp_path / "remote", tmp_path / "marker"
    folder.mkdir()
    (folder / "evil.py").write_text(_EVIL.format(marker=str(marker)))
    auto_map = {"AutoConfig": "evil.Config", "AutoModelForCausalLM": "evil.Model"}
    config = {"model_type": "evil", "architectures": ["Model"]}
    tokenizer = {"tokenizer_class": "EvilTokenizer"}
    if where == "config.json":
        config["auto_map"] = auto_map
    else:
        tokenizer["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    return folder, marker


@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json"])
def test_a_model_folder_that_needs_its_own_code_is_refused(tmp_path, where):
    folder, marker = _remote_code_folder(tmp_path, where)
    with pytest.raises(ValueError, match=rf"{folder} needs code shipped.*{where} has auto_map"):
        load_base_llm(LLMConfig(source="path", path=str(folder)))
    assert not marker.exists()


def test_remote_code_is_refused_without_a_prompt_when_stdin_is_a_pipe(tmp_path):
    folder, marker = _remote_code_folder(tmp_path, "config.json")
    script = (
        "import sys\n"
        "from au_llm.config import LLMConfig\n"
        "from au_llm.model.llm import load_base_llm\n"
        "try:\n"
        f"    load_base_llm(LLMConfig(source='path', path={str(folder)!r}))\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(2)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input="y\ny\n", capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "auto_map" in done.stdout and "[y/N]" not in done.stdout + done.stderr
    assert not marker.exists()


def test_a_damaged_config_json_of_a_model_folder_is_named(tmp_path):
    folder = tmp_path / "llm"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen2", "hidden')
    with pytest.raises(ValueError, match=rf"{folder / 'config.json'} is not readable JSON"):
        load_base_llm(LLMConfig(source="path", path=str(folder)))
