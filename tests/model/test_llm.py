import json
import subprocess
import sys
from pathlib import Path

import pytest

from au_llm.config import LLMConfig
from au_llm.model.llm import load_base_llm

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
