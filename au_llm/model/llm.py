"""The frozen causal LLM: loading (once per process), a built-in tokenizer, and LoRA adapters.

``load_base_llm`` returns a :class:`BaseLLM`: the frozen causal LM, its tokenizer, its hidden size
and an identity record. Bases are cached per process (``functools.lru_cache`` keyed by the parts of
the config that define the base), so every fold and every ``build_au_llm`` call reuses the same
weights. LoRA adapters are injected *into* the cached base (peft), so one :class:`AULLM` owns the
adapters of a base at a time: building a second model on the same base replaces the adapters, and
the first model then refuses to run (:func:`attach_lora` hands out an owner token).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import re
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from au_llm.config import LLMConfig, LoraConfig, TinyLLMConfig

logger = logging.getLogger(__name__)

_VOLATILE_CONFIG_KEYS = ("transformers_version", "_name_or_path", "dtype", "torch_dtype")


class PromptTokenizer(Protocol):
    """Turns prompt text into token ids."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Return the ids of ``text`` (with BOS etc. when ``add_special_tokens``)."""
        ...


class WordTokenizer:
    """A deterministic word-level tokenizer for the random tiny LLM (no vocabulary file).

    Text is lower-cased and split into words and single punctuation marks; each piece maps to
    ``n_special + crc32(piece) % (vocab_size - n_special)``. Ids 0, 1, 2 are PAD, BOS and EOS;
    ``encode`` prepends BOS when ``add_special_tokens``.
    """

    pad_id, bos_id, eos_id = 0, 1, 2
    n_special = 3
    _pattern = re.compile(r"\w+|[^\w\s]")

    def __init__(self, vocab_size: int) -> None:
        if vocab_size <= self.n_special:
            raise ValueError(f"WordTokenizer: vocab_size {vocab_size} must exceed {self.n_special}")
        self.vocab_size = vocab_size

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Return the ids of ``text``, with BOS first when ``add_special_tokens``."""
        span = self.vocab_size - self.n_special
        ids = [
            self.n_special + zlib.crc32(piece.encode("utf-8")) % span
            for piece in self._pattern.findall(text.lower())
        ]
        return [self.bos_id, *ids] if add_special_tokens else ids


class HFTokenizer:
    """Adapter of a Hugging Face tokenizer to :class:`PromptTokenizer`."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Return the ids of ``text`` as the model's own tokenizer produces them."""
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


@dataclass(eq=False)
class BaseLLM:
    """A frozen causal LM shared by every model built on it in this process.

    Attributes:
        model: The Hugging Face causal LM (frozen; LoRA adapters are injected into it).
        tokenizer: Prompt tokenizer.
        hidden_size: Width of the LM's hidden states.
        identity: ``{"source", "path", "config_sha256", "seed"}``; checkpoints record it.
        owner: Token of the model that currently owns the LoRA adapters (see :func:`attach_lora`).
    """

    model: nn.Module
    tokenizer: PromptTokenizer
    hidden_size: int
    identity: dict[str, Any]
    owner: object | None = field(default=None, repr=False)


def config_sha256(config: Any) -> str:
    """Hash a transformers config as canonical JSON (volatile keys such as the version dropped)."""
    data = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _tiny_model(tiny: TinyLLMConfig) -> nn.Module:
    """Build the random-initialised tiny Qwen2/Llama causal LM (seeded by ``tiny.seed``)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    shape = {
        "vocab_size": tiny.vocab_size,
        "hidden_size": tiny.hidden_size,
        "intermediate_size": tiny.intermediate_size,
        "num_hidden_layers": tiny.num_layers,
        "num_attention_heads": tiny.num_heads,
        "num_key_value_heads": tiny.num_kv_heads,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": True,
        "pad_token_id": WordTokenizer.pad_id,
        "bos_token_id": WordTokenizer.bos_id,
        "eos_token_id": WordTokenizer.eos_id,
    }
    config_cls, model_cls = (
        (Qwen2Config, Qwen2ForCausalLM) if tiny.arch == "qwen2" else (LlamaConfig, LlamaForCausalLM)
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tiny.seed)
        return model_cls(config_cls(**shape))


def _load_path_model(path: Path, dtype: torch.dtype) -> tuple[nn.Module, PromptTokenizer]:
    """Load a local Hugging Face causal LM directory and its tokenizer (no download)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not path.is_dir():
        raise FileNotFoundError(f"model.llm.path: {path} is not a directory (a local HF model)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ValueError(f"model.llm.path: cannot load a causal LM from {path}: {exc}") from exc
    return model, HFTokenizer(tokenizer)


@functools.lru_cache(maxsize=4)
def _load_base_cached(key: tuple[Any, ...]) -> BaseLLM:
    source, path, tiny_fields, load_bf16 = key
    if source == "tiny":
        tiny = TinyLLMConfig(**dict(tiny_fields))
        model = _tiny_model(tiny)
        tokenizer: PromptTokenizer = WordTokenizer(tiny.vocab_size)
        seed: int | None = tiny.seed
    else:
        dtype = torch.bfloat16 if load_bf16 else torch.float32
        model, tokenizer = _load_path_model(Path(path), dtype)
        seed = None
    model.eval()
    model.requires_grad_(False)
    config = model.config
    identity = {
        "source": source,
        "path": path,
        "config_sha256": config_sha256(config),
        "seed": seed,
    }
    logger.info("loaded base LLM %s", identity)
    return BaseLLM(model, tokenizer, int(config.hidden_size), identity)


def base_key(cfg: LLMConfig) -> tuple[Any, ...]:
    """Return the hashable part of ``cfg`` that defines the base LLM (the cache key)."""
    if cfg.source == "tiny":
        return ("tiny", None, tuple(sorted(asdict(cfg.tiny).items())), False)
    if cfg.source == "path":
        path = str(Path(str(cfg.path)).expanduser().resolve())
        return ("path", path, None, bool(cfg.bf16 and torch.cuda.is_available()))
    raise ValueError(f"model.llm.source = {cfg.source!r} has no base LLM")


def load_base_llm(cfg: LLMConfig) -> BaseLLM:
    """Load (or fetch from the per-process cache) the frozen base LLM described by ``cfg``.

    ``source: tiny`` builds a random Qwen2/Llama from ``cfg.tiny`` (seeded, identical in every
    process) with :class:`WordTokenizer`; ``source: path`` loads a local Hugging Face directory
    (``local_files_only``; in bfloat16 when ``cfg.bf16`` and CUDA is available, else float32).

    Raises:
        ValueError: For ``source: none`` or a directory that holds no loadable causal LM.
        FileNotFoundError: If ``cfg.path`` is not a directory.
    """
    return _load_base_cached(base_key(cfg))


def base_cache_info() -> Any:
    """Return the ``functools`` cache statistics of :func:`load_base_llm` (hits, misses, size)."""
    return _load_base_cached.cache_info()


def clear_base_cache() -> None:
    """Forget every cached base LLM (the next :func:`load_base_llm` loads again)."""
    _load_base_cached.cache_clear()


def _lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from peft.tuners.lora import LoraLayer

    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]


def remove_lora(model: nn.Module) -> None:
    """Replace every peft LoRA layer in ``model`` by its original base layer."""
    for name, layer in _lora_layers(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Return the LoRA adapter parameters (``lora_A``/``lora_B`` weights) inside ``model``."""
    params: list[nn.Parameter] = []
    for _, layer in _lora_layers(model):
        for adapters in (layer.lora_A, layer.lora_B):
            for adapter in adapters.values():
                params.extend(adapter.parameters())
    return params


def reset_lora(model: nn.Module) -> None:
    """Re-initialise every LoRA adapter as peft does (A: Kaiming-uniform, B: zeros).

    The values are drawn on the CPU from the global RNG and copied in, so they do not depend on the
    device the model lives on.
    """
    with torch.no_grad():
        for _, layer in _lora_layers(model):
            for adapter in layer.lora_A.values():
                weight = torch.empty(adapter.weight.shape)
                nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
                adapter.weight.copy_(weight)
            for adapter in layer.lora_B.values():
                adapter.weight.zero_()


def attach_lora(base: BaseLLM, cfg: LoraConfig) -> object:
    """Remove any adapters from ``base.model`` and inject fresh LoRA adapters (float32).

    Args:
        base: The shared base LLM.
        cfg: Rank, alpha, dropout and target module names.

    Returns:
        An owner token; ``base.owner`` is set to it, so earlier owners can detect the takeover.

    Raises:
        ValueError: If no module of the base matches ``cfg.target_modules``.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import inject_adapter_in_model

    remove_lora(base.model)
    peft_cfg = PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        bias="none",
    )
    try:
        inject_adapter_in_model(peft_cfg, base.model)
    except ValueError as exc:
        raise ValueError(
            f"model.llm.lora.target_modules = {list(cfg.target_modules)}: {exc}"
        ) from exc
    base.model.requires_grad_(False)
    for param in lora_parameters(base.model):
        param.data = param.data.float()
        param.requires_grad_(True)
    token = object()
    base.owner = token
    return token


def cast_frozen_base(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast the frozen (non-LoRA) floating-point parameters of ``model`` to ``dtype`` in place.

    Buffers (e.g. rotary frequencies) are left alone.
    """
    adapters = {id(p) for p in lora_parameters(model)}
    for param in model.parameters():
        if id(param) not in adapters and param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)
