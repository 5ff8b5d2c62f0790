"""Tests of au_llm.model; small helpers shared by the test modules."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
    cfg = ModelConfig(projector=ProjectorConfig(hidden=32, dropout=dropout), llm=llm)
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


def build_tiny(
    spec: ModelSpec, seed: int, device: torch.device | str = "cpu", precision: str = "fp32"
) -> AULLM:
    """The model of ``spec`` alone (built on its processor's prompt ids, see ``build_model``)."""
    return build_model(spec, seed, device, precision)[0]
