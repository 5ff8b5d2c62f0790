"""Tests of au_llm.model; small helpers shared by the test modules."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path

import torch

from au_llm.config import LLMConfig, LoraConfig, ModelConfig, ProjectorConfig, TinyLLMConfig
from au_llm.model.checkpoint import build_model
from au_llm.model.modeling_au_llm import AULLM
from au_llm.model.spec import ModelSpec


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run with one torch thread (tiny tensors: avoids OpenMP spin-waiting on busy CPUs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def tiny_model_config(
    arch: str = "qwen2",
    *,
    source: str = "tiny",
    reader: str = "llm",
    fast_path: bool = True,
    prompt: str | None = None,
    n_visual_tokens: int = 1,
    dropout: float = 0.0,
) -> ModelConfig:
    """A small AU-LLM config: led3dcnn, narrow projector, 2-layer hidden-32 LLM, LoRA r=4."""
    llm = LLMConfig(
        source=source,
        tiny=TinyLLMConfig(
            arch=arch, hidden_size=32, num_heads=4, num_kv_heads=2, intermediate_size=64
        ),
        n_visual_tokens=n_visual_tokens,
        lora=LoraConfig(r=4, alpha=8, dropout=dropout),
        fast_path=fast_path,
    )
    if prompt is not None:
        llm.prompt = prompt
    cfg = ModelConfig(projector=ProjectorConfig(hidden=32, dropout=dropout), llm=llm, reader=reader)
    cfg.backbone.dropout = dropout
    cfg.backbone.high_dim = 32
    return cfg


def clips(batch: int = 2, frames: int = 6, size: int = 64, channels: int = 1, seed: int = 0):
    """Random clips [B, C, T, H, W] in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, frames, size, size, generator=generator)


def tiny_spec(
    cfg: ModelConfig, n_aus: int, frames: int = 6, size: int = 64, channels: int = 1
) -> ModelSpec:
    """A spec for ``cfg`` with AUs 1..n_aus on gray 6x64x64 clips (the shape of :func:`clips`)."""
    return ModelSpec(cfg, tuple(range(1, n_aus + 1)), channels, frames, size)


FORWARD_TERMS = 64 * 2 * 9 * 9 + 32
"""The longest sum behind a logit of the tiny model on 6x64x64 clips: the projector's first layer
reads the backbone's 10368 mid-level and 32 high-level features."""


def gradient_terms(batch: int, frames: int = 6, size: int = 64) -> int:
    """The longest sum behind the tiny model's gradients: the first convolution's weights sum
    over every position of the ``batch x (frames - 1)`` filtered frames, ``(size - 4)^2`` each."""
    return batch * (frames - 1) * (size - 4) ** 2


def float64_copy(model: AULLM) -> AULLM:
    """A float64 copy of ``model``: the exact side of ``tests/tolerance.py``'s comparisons."""
    return copy.deepcopy(model).double()


def build_tiny(
    spec: ModelSpec, seed: int, device: torch.device | str = "cpu", precision: str = "fp32"
) -> AULLM:
    """The model of ``spec`` alone (built on its processor's prompt ids, see ``build_model``)."""
    return build_model(spec, seed, device, precision)[0]


def both_heads_model(*, skip: bool = False) -> AULLM:
    """A tiny model with the linear and text heads (``list`` and ``yesno``), AUs 1..3."""
    cfg = tiny_model_config()
    cfg.head = "both"
    cfg.text.formats = ["list", "yesno"]
    cfg.skip_head = skip
    return build_tiny(tiny_spec(cfg, 3), seed=0)


CHAT_SPECIAL = ("<|user|>", "<|assistant|>", "<|end|>")
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
"""A small Jinja chat template whose role and end markers are special tokens of the vocabulary."""


def save_local_hf_model(
    directory: Path,
    layers: int,
    seed: int = 0,
    arch: str = "qwen2",
    chat_template: str | None = None,
    vocab_size: int = 64,
    tie_word_embeddings: bool = False,
) -> None:
    """A tiny Qwen2 (or Llama) causal LM with a word-level tokenizer, saved as a local HF folder.

    The vocabulary holds the default prompt's words, the ``list`` answers of AUs 1-3 and the
    markers of :data:`CHAT_TEMPLATE`; with ``chat_template`` the markers are special tokens and
    the tokenizer carries the template. The model's ``vocab_size`` rows cover the tokenizer's
    ids (18 of them) unless set lower.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    words = ["<pad>", "<s>", "</s>", "<unk>", "analyse", "the", "following", "features", "."]
    words += ["AU1", "AU2", "AU3", ",", "none", *CHAT_SPECIAL]
    word_model = models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>")
    tokenizer = Tokenizer(word_model)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    special = {"extra_special_tokens": list(CHAT_SPECIAL)} if chat_template else {}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", **special
    )
    fast.add_tokens(["AU1", "AU2", "AU3", "none"])  # whole words whatever class loads the files
    fast.chat_template = chat_template
    fast.save_pretrained(directory)
    config_cls, model_cls = {
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
        "llama": (LlamaConfig, LlamaForCausalLM),
    }[arch]
    config = config_cls(
        vocab_size=vocab_size,
        tie_word_embeddings=tie_word_embeddings,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    torch.manual_seed(seed)
    model_cls(config).save_pretrained(directory)


def save_tiny_gguf(path: Path, drop: tuple[str, ...] = (), vocab: int = 64) -> None:
    """A tiny random Llama (1 layer, hidden 32) with a SentencePiece-style vocabulary, as GGUF.

    ``drop`` leaves out the tensors whose GGUF names start with one of its prefixes (``blk.0.``).
    """
    import gguf
    import numpy as np

    hidden, ffn, heads, kv_heads = 32, 64, 4, 2
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(["<unk>", "<s>", "</s>", *(f"w{i}" for i in range(vocab - 3))])
    writer.add_token_scores([0.0] * vocab)
    writer.add_token_types([2, 3, 3, *([1] * (vocab - 3))])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    kv = kv_heads * hidden // heads
    shapes = {
        "token_embd.weight": (vocab, hidden),
        "output_norm.weight": (hidden,),
        "output.weight": (vocab, hidden),
        "blk.0.attn_norm.weight": (hidden,),
        "blk.0.ffn_norm.weight": (hidden,),
        "blk.0.attn_q.weight": (hidden, hidden),
        "blk.0.attn_k.weight": (kv, hidden),
        "blk.0.attn_v.weight": (kv, hidden),
        "blk.0.attn_output.weight": (hidden, hidden),
        "blk.0.ffn_gate.weight": (ffn, hidden),
        "blk.0.ffn_up.weight": (ffn, hidden),
        "blk.0.ffn_down.weight": (hidden, ffn),
    }
    rng = np.random.default_rng(0)
    for name, shape in shapes.items():
        if not (drop and name.startswith(drop)):
            writer.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def drop_weights(folder: Path, prefix: str, extra: dict[str, torch.Tensor] | None = None) -> None:
    """Remove the tensors named ``prefix...`` from ``folder``'s weights, and add ``extra``."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    kept = {k: v for k, v in load_file(path).items() if not k.startswith(prefix)}
    save_file({**kept, **(extra or {})}, path, metadata={"format": "pt"})
