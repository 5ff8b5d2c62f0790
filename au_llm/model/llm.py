"""The frozen causal LLM: loading, its tokenizer, a built-in tokenizer, and LoRA adapters.

``load_base_llm`` returns a :class:`BaseLLM`: a freshly loaded frozen causal LM, its hidden size
and an identity record; :func:`load_tokenizer` loads the tokenizer of the same source (the text
processor, :mod:`au_llm.model.processing_au_llm`, owns it). Nothing is cached here: the model that
owns the LLM (:class:`~au_llm.model.modeling_au_llm.AULLM`) loads it once in its constructor, and
whoever needs reuse across folds or inputs holds that model and calls its ``reset_trainable``.
:func:`attach_lora` injects LoRA adapters into the owned LLM (peft). A user's folder or ``.gguf``
file is read through :mod:`au_llm.model.hf_folder` (every weight from its files, the vocabulary
fits the tokenizer, damage named), and its chat template is rendered within bounds
(:mod:`au_llm.model.chat_render`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from au_llm.config import LLMConfig, LoraConfig, TinyLLMConfig
from au_llm.model.chat_render import TemplateLimitError, render_bounded
from au_llm.model.hf_folder import (
    LOCAL,
    check_vocabulary,
    checked_folder,
    error_line,
    from_folder,
    load_causal_lm,
)

logger = logging.getLogger(__name__)

_VOLATILE_CONFIG_KEYS = ("transformers_version", "_name_or_path", "dtype", "torch_dtype")


class PromptTokenizer(Protocol):
    """Turns text into token ids and back."""

    eos_id: int

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Return the ids of ``text`` (with BOS etc. when ``add_special_tokens``)."""
        ...

    def decode(self, ids: list[int]) -> str:
        """Return the text of ``ids``, special tokens left out."""
        ...

    def render_chat(self, user: str) -> str | None:
        """The chat template applied to one user turn, ending with the assistant's header.

        Returns None when the tokenizer has no chat template.
        """
        ...

    def ordinary_ids(self) -> list[int]:
        """Every id of the vocabulary that is not a special token, in increasing order."""
        ...


class ByteTokenizer:
    """A byte-level tokenizer for the random tiny LLM: exact round trip, no vocabulary file.

    Ids 0, 1, 2 are PAD, BOS and EOS; byte ``b`` of the UTF-8 text is id ``3 + b``. ``encode``
    prepends BOS when ``add_special_tokens``.
    """

    pad_id, bos_id, eos_id = 0, 1, 2
    n_special = 3
    min_vocab = n_special + 256

    def __init__(self, vocab_size: int) -> None:
        if vocab_size < self.min_vocab:
            raise ValueError(f"ByteTokenizer: vocab_size {vocab_size} < {self.min_vocab}")
        self.vocab_size = vocab_size

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Return the ids of ``text``, with BOS first when ``add_special_tokens``."""
        ids = [self.n_special + b for b in text.encode("utf-8")]
        return [self.bos_id, *ids] if add_special_tokens else ids

    def decode(self, ids: list[int]) -> str:
        """Return the text of ``ids`` (special and out-of-range ids are skipped)."""
        data = bytes(i - self.n_special for i in ids if self.n_special <= i < self.min_vocab)
        return data.decode("utf-8", errors="replace")

    def render_chat(self, user: str) -> str | None:
        """None: the byte tokenizer has no chat template."""
        return None

    def ordinary_ids(self) -> list[int]:
        """The 256 byte ids."""
        return list(range(self.n_special, self.min_vocab))


class HFTokenizer:
    """Adapter of a Hugging Face tokenizer to :class:`PromptTokenizer`.

    A model without a BOS token (SmolLM2) gets none; its end-of-sequence token (``<|im_end|>``
    for SmolLM2) ends generated answers.

    Args:
        tokenizer: The Hugging Face tokenizer.
        folder: The model folder it was loaded from (named in errors about its chat template).
    """

    def __init__(self, tokenizer: Any, folder: Path) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError("the model's tokenizer has no end-of-sequence token")
        self.tokenizer = tokenizer
        self.folder = folder
        self.eos_id = int(tokenizer.eos_token_id)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Return the ids of ``text`` as the model's own tokenizer produces them."""
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        """Return the text of ``ids`` without special tokens."""
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def render_chat(self, user: str) -> str | None:
        """The tokenizer's chat template on one user turn plus the assistant header, or None.

        The template runs within bounds of work and size (:mod:`au_llm.model.chat_render`).

        Raises:
            ValueError: The template fails, or goes past a bound; the message names its file.
        """
        template = getattr(self.tokenizer, "chat_template", None)
        if not template:
            return None
        messages = [{"role": "user", "content": user}]
        try:
            text = render_bounded(
                lambda: self.tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                ),
                str(template),
            )
        except Exception as exc:  # the template is code from the folder: any error is its own
            reason = str(exc) if isinstance(exc, TemplateLimitError) else error_line(exc)
            raise ValueError(
                f"model.llm.path: the chat template in {_template_file(self.folder)} cannot be "
                f"used: {reason}; fix it, or set model.llm.chat_template=off"
            ) from exc
        return str(text)

    def ordinary_ids(self) -> list[int]:
        """Every id of the tokenizer's vocabulary except its special tokens."""
        special = set(self.tokenizer.all_special_ids)
        return [i for i in range(len(self.tokenizer)) if i not in special]


@dataclass(eq=False)
class BaseLLM:
    """A frozen causal LM and what goes with it.

    Attributes:
        model: The Hugging Face causal LM (frozen; LoRA adapters are injected into it).
        hidden_size: Width of the LM's hidden states.
        identity: ``{"source", "path", "config_sha256", "seed", "weights_sha256"}`` (weights
            fingerprint of a ``source: path`` LLM, see :func:`weights_sha256`); checkpoints record
            it.
    """

    model: nn.Module
    hidden_size: int
    identity: dict[str, Any]


def config_sha256(config: Any) -> str:
    """Hash a transformers config as canonical JSON (volatile keys such as the version dropped)."""
    data = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def weights_sha256(model: nn.Module, samples: int = 64) -> str:
    """Fingerprint of a model's weights (other weights at the same path give another one).

    Hashes every tensor's name, shape and up to ``samples`` of its values taken at an even
    stride, so it stays cheap for billions of weights.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        picked = flat[:: max(1, flat.numel() // samples)][:samples]
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(picked.to(torch.float64).cpu().numpy().tobytes())
    return digest.hexdigest()


def _tiny_config(tiny: TinyLLMConfig) -> Any:
    """The transformers config of the tiny Qwen2/Llama causal LM."""
    from transformers import LlamaConfig, Qwen2Config

    shape = {
        "vocab_size": tiny.vocab_size,
        "hidden_size": tiny.hidden_size,
        "intermediate_size": tiny.intermediate_size,
        "num_hidden_layers": tiny.num_layers,
        "num_attention_heads": tiny.num_heads,
        "num_key_value_heads": tiny.num_kv_heads,
        "max_position_embeddings": 2048,
        "initializer_range": tiny.init_std,
        "tie_word_embeddings": True,
        "pad_token_id": ByteTokenizer.pad_id,
        "bos_token_id": ByteTokenizer.bos_id,
        "eos_token_id": ByteTokenizer.eos_id,
    }
    return (Qwen2Config if tiny.arch == "qwen2" else LlamaConfig)(**shape)


def _tiny_model(tiny: TinyLLMConfig) -> nn.Module:
    """Build the random-initialised tiny Qwen2/Llama causal LM (seeded by ``tiny.seed``)."""
    from transformers import LlamaForCausalLM, Qwen2ForCausalLM

    model_cls = Qwen2ForCausalLM if tiny.arch == "qwen2" else LlamaForCausalLM
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tiny.seed)
        return model_cls(_tiny_config(tiny))


def _model_folder(cfg: LLMConfig) -> Path:
    """The Hugging Face folder of a ``smollm2`` or ``path`` LLM (a ``.gguf`` converted once)."""
    from au_llm.model.smollm2 import gguf_model_dir, smollm2_dir

    if cfg.source == "smollm2":
        return smollm2_dir()
    given = Path(str(cfg.path)).expanduser().resolve()
    return gguf_model_dir(given) if given.suffix == ".gguf" else given


def _template_file(folder: Path) -> Path:
    """The file of ``folder`` that holds its tokenizer's chat template."""
    for name in ("chat_template.jinja", "chat_template.json"):
        if (folder / name).is_file():
            return folder / name
    return folder / "tokenizer_config.json"


def load_tokenizer(cfg: LLMConfig) -> PromptTokenizer:
    """The tokenizer of the LLM described by ``cfg`` (no download, no shipped code).

    ``source: tiny`` gets :class:`ByteTokenizer`; ``smollm2`` and ``path`` the folder's own
    tokenizer (see :func:`load_base_llm`), checked to fit the model's vocabulary.

    Raises:
        ValueError: For a folder whose tokenizer cannot be loaded, or one whose tokenizer has
            more tokens than its model's vocabulary.
        FileNotFoundError: If ``cfg.path`` is not a directory.
    """
    if cfg.source == "tiny":
        return ByteTokenizer(cfg.tiny.vocab_size)
    from transformers import AutoTokenizer

    def read(folder: Path) -> Any:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), **LOCAL)
        tokenizer("AU1, AU12")  # settings that load but cannot encode fail here, named
        return tokenizer

    folder = checked_folder(_model_folder(cfg))
    tokenizer = from_folder("a tokenizer", folder, lambda: read(folder))
    check_vocabulary(folder, tokenizer)
    return HFTokenizer(tokenizer, folder)


def llm_config(cfg: LLMConfig) -> Any:
    """The transformers config of the LLM ``cfg`` describes, without loading its weights.

    Raises:
        ValueError: A folder whose config cannot be read.
        FileNotFoundError: If ``cfg.path`` is not a directory.
    """
    if cfg.source == "tiny":
        return _tiny_config(cfg.tiny)
    from transformers import AutoConfig

    folder = checked_folder(_model_folder(cfg))
    return from_folder(
        "a model config", folder, lambda: AutoConfig.from_pretrained(str(folder), **LOCAL)
    )


def load_base_llm(cfg: LLMConfig) -> BaseLLM:
    """Load the frozen base LLM described by ``cfg`` (a new object on every call).

    ``source: tiny`` builds a random Qwen2/Llama from ``cfg.tiny`` (seeded, identical in every
    process); ``source: smollm2`` loads the built-in SmolLM2-135M (see
    :mod:`au_llm.model.smollm2`); ``source: path`` loads a local Hugging Face directory
    (``local_files_only``), or a ``.gguf`` file converted once into the cache; all in float32,
    every weight from the files (:func:`~au_llm.model.hf_folder.load_causal_lm`).
    The caller casts the frozen weights for its device (see
    :meth:`~au_llm.model.modeling_au_llm.AULLM.place`).

    Raises:
        ValueError: For a directory that holds no loadable causal LM, or one whose files lack
            weights of the model or hold tensors it does not have.
        FileNotFoundError: If ``cfg.path`` is not a directory.
    """
    if cfg.source == "tiny":
        model = _tiny_model(cfg.tiny)
        path, seed = None, cfg.tiny.seed
    else:
        folder = checked_folder(_model_folder(cfg))
        path, seed = str(folder), None
        model = load_causal_lm(folder, folder)
    model.eval()
    model.requires_grad_(False)
    config = model.config
    identity = {
        "source": cfg.source,
        "path": path,
        "config_sha256": config_sha256(config),
        "seed": seed,
        "weights_sha256": weights_sha256(model) if cfg.source == "path" else None,
    }
    logger.info("loaded base LLM %s", identity)
    return BaseLLM(model, int(config.hidden_size), identity)


def _lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from peft.tuners.lora import LoraLayer

    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]


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


def attach_lora(model: nn.Module, cfg: LoraConfig) -> None:
    """Inject fresh float32 LoRA adapters into the frozen ``model`` (in place).

    Args:
        model: A frozen causal LM without adapters.
        cfg: Rank, alpha, dropout and target module names.

    Raises:
        ValueError: If no module of ``model`` matches ``cfg.target_modules``.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import inject_adapter_in_model

    peft_cfg = PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        bias="none",
    )
    try:
        inject_adapter_in_model(peft_cfg, model)
    except ValueError as exc:
        raise ValueError(
            f"model.llm.lora.target_modules = {list(cfg.target_modules)}: {exc}"
        ) from exc
    model.requires_grad_(False)
    for param in lora_parameters(model):
        param.data = param.data.float()
        param.requires_grad_(True)


def norm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The weights (and biases) of every normalisation layer (RMSNorm, LayerNorm) of ``model``."""
    return [
        param
        for module in model.modules()
        if "norm" in type(module).__name__.lower()
        for param in module.parameters(recurse=False)
    ]


def train_norms(model: nn.Module) -> None:
    """Make the normalisation weights of the frozen ``model`` trainable, in float32 (in place)."""
    for param in norm_parameters(model):
        param.data = param.data.float()
        param.requires_grad_(True)


def cast_frozen_base(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast the frozen floating-point parameters of ``model`` to ``dtype`` in place.

    Trainable parameters (LoRA adapters, trained norm weights) stay as they are (float32);
    buffers (e.g. rotary frequencies) are left alone.
    """
    for param in model.parameters():
        if not param.requires_grad and param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)
