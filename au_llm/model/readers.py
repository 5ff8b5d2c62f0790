"""What reads the visual token(s) (``model.reader``): the LLM, shaped for it, or a control.

LLM readers (:func:`prepare_llm` shapes the loaded frozen base):

* ``llm``: the LLM as configured, with ``model.llm.tuning`` (LoRA, norm weights or nothing
  trains) and ``model.llm.readout`` (a ``layer`` read-out cuts the LLM short).
* ``llm_reinit``: the same architecture with every weight re-initialised at random
  (:func:`reinit_llm`, from ``model.reader_seed``: the same in every fold), frozen, then tuned as
  ``llm`` is: does the pretrained knowledge matter?
* ``llm_random_prompt``: the pretrained LLM; the text processor replaces the prompt's tokens by
  random ones (:mod:`au_llm.model.processing_au_llm`).

Controls (:func:`build_control`), each with the configured LLM's hidden size ``H`` (read from its
configuration) as the visual token's width:

* ``none``: nothing; the head reads the visual token(s).
* ``mlp`` (:class:`MLPReader`): ``Linear(H, m) -> GELU -> Linear(m, H)`` on each visual token,
  with ``2 H m + m + H`` trainable parameters; ``m = round((P - H) / (2 H + 1))`` makes that
  the LoRA adapters' count ``P = sum r (in + out)`` over the LLM's targeted linear layers
  (:func:`lora_parameter_count`), within ``(2 H + 1) / 2`` parameters.
* ``resmlp`` (:class:`ResMLPReader`): one pre-norm residual block
  ``x + Linear(H, H)(GELU(Linear(H, H)(RMSNorm(x))))`` per LLM layer, then an RMSNorm; each
  block's output layer starts at zero, so the stack starts as that RMSNorm of its input (as deep
  residual networks are initialised: Goyal et al. 2017).
* ``attention`` / ``transformer`` (:class:`AttentionReader`): one pre-norm self-attention layer
  (the LLM's head count) over the prompt's token embeddings (the LLM's own embedding, frozen)
  and the visual token(s), read at the last position, then an RMSNorm; ``transformer`` adds the
  LLM's MLP form (SwiGLU of the LLM's intermediate width): one full transformer layer. There are
  no position embeddings.

Every control's layers are trainable (their learning rate is ``train.lr_lora``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from au_llm.config import LoraConfig, ModelConfig
from au_llm.model.llm import attach_lora, llm_config, load_base_llm, train_norms
from au_llm.model.readout import cut_layers


def lora_parameter_count(config: Any, lora: LoraConfig) -> int:
    """Trainable parameters of LoRA adapters ``lora`` on the causal LM of ``config``.

    Each targeted linear layer ``in -> out`` (a module named, or ending with ``.`` and, one of
    ``lora.target_modules``, as peft matches them) gets ``r (in + out)`` parameters. The model
    is built on the meta device: no memory, no weights.
    """
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    targets = tuple(lora.target_modules)
    return sum(
        lora.r * (module.in_features + module.out_features)
        for name, module in skeleton.named_modules()
        if isinstance(module, nn.Linear)
        and any(name == t or name.endswith(f".{t}") for t in targets)
    )


def mlp_width(parameters: int, hidden: int) -> int:
    """Hidden width ``m`` of :class:`MLPReader` closest to ``parameters`` trainable parameters."""
    return max(1, round((parameters - hidden) / (2 * hidden + 1)))


class MLPReader(nn.Module):
    """``Linear(H, m) -> GELU -> Linear(m, H)`` on each visual token ``[B, n, H] -> [B, n, H]``."""

    def __init__(self, hidden: int, width: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(hidden, width), nn.GELU(), nn.Linear(width, hidden))

    def forward(self, tokens: Tensor) -> Tensor:
        """``[B, n, H]`` -> ``[B, n, H]``."""
        return self.mlp(tokens)

    def reset_parameters(self) -> None:
        """Re-initialise both linear layers."""
        for layer in (self.mlp[0], self.mlp[2]):
            layer.reset_parameters()


class ResMLPReader(nn.Module):
    """Pre-norm residual MLP blocks of width ``H`` on each visual token, then an RMSNorm.

    Args:
        hidden: Width ``H``.
        blocks: Number of blocks (the LLM's layer count).
        eps: RMSNorm epsilon (the LLM's).
    """

    def __init__(self, hidden: int, blocks: int, eps: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.RMSNorm(hidden, eps=eps),
                nn.Linear(hidden, hidden),
                nn.GELU(),
                nn.Linear(hidden, hidden),
            )
            for _ in range(blocks)
        )
        self.norm = nn.RMSNorm(hidden, eps=eps)
        self._zero_outputs()

    def _zero_outputs(self) -> None:
        """Zero each block's output layer: every block starts as the identity."""
        with torch.no_grad():
            for block in self.blocks:
                block[-1].weight.zero_()
                block[-1].bias.zero_()

    def forward(self, tokens: Tensor) -> Tensor:
        """``[B, n, H]`` -> ``[B, n, H]``; the residual stream is float32 (under autocast too)."""
        tokens = tokens.float()
        for block in self.blocks:
            tokens = tokens + block(tokens)
        return self.norm(tokens)

    def reset_parameters(self) -> None:
        """Re-initialise every block and the norm, each block's output layer at zero."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        self._zero_outputs()


class SwiGLU(nn.Module):
    """The MLP of Llama/Qwen2 layers: ``down(silu(gate(x)) * up(x))``, without biases."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate = nn.Linear(hidden, intermediate, bias=False)
        self.up = nn.Linear(hidden, intermediate, bias=False)
        self.down = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``[..., H]`` -> ``[..., H]``."""
        return self.down(F.silu(self.gate(x)) * self.up(x))


class AttentionReader(nn.Module):
    """One pre-norm self-attention layer (with ``intermediate``, and an MLP), read at the end.

    Args:
        hidden: Width ``H``.
        heads: Attention heads (the LLM's).
        intermediate: Width of the SwiGLU MLP (the LLM's); 0 for attention alone.
        eps: RMSNorm epsilon (the LLM's).
    """

    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float) -> None:
        super().__init__()
        self.attention_norm = nn.RMSNorm(hidden, eps=eps)
        self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.mlp_norm = nn.RMSNorm(hidden, eps=eps) if intermediate else None
        self.mlp = SwiGLU(hidden, intermediate) if intermediate else None
        self.norm = nn.RMSNorm(hidden, eps=eps)

    def forward(self, sequence: Tensor) -> Tensor:
        """``[B, L, H]`` (prompt embeddings and visual tokens) -> ``[B, H]`` at the last position.

        The last position attends to every position (what a causal layer gives it). The
        residual stream is float32 (under autocast too).
        """
        sequence = sequence.float()
        normed = self.attention_norm(sequence)
        attended, _ = self.attention(normed[:, -1:], normed, normed, need_weights=False)
        hidden = sequence[:, -1:] + attended
        if self.mlp is not None and self.mlp_norm is not None:
            hidden = hidden + self.mlp(self.mlp_norm(hidden))
        return self.norm(hidden)[:, 0]

    def reset_parameters(self) -> None:
        """Re-initialise attention, MLP and norms."""
        self.attention._reset_parameters()
        for module in (self.attention_norm, self.mlp_norm, self.norm):
            if module is not None:
                module.reset_parameters()
        if self.mlp is not None:
            for layer in (self.mlp.gate, self.mlp.up, self.mlp.down):
                layer.reset_parameters()


def build_control(cfg: ModelConfig, config: Any) -> nn.Module | None:
    """The control reader of ``cfg.reader`` for an LLM of transformers config ``config``.

    Returns:
        The module (trainable), or None for ``none``.
    """
    hidden = int(config.hidden_size)
    eps = float(getattr(config, "rms_norm_eps", 1e-6))
    if cfg.reader == "mlp":
        return MLPReader(hidden, mlp_width(lora_parameter_count(config, cfg.llm.lora), hidden))
    if cfg.reader == "resmlp":
        return ResMLPReader(hidden, int(config.num_hidden_layers), eps)
    if cfg.reader in ("attention", "transformer"):
        intermediate = int(config.intermediate_size) if cfg.reader == "transformer" else 0
        return AttentionReader(hidden, int(config.num_attention_heads), intermediate, eps)
    return None


def reinit_llm(model: nn.Module, seed: int) -> None:
    """Re-initialise every weight of a causal LM at random, as transformers initialises it.

    Linear and embedding weights are drawn from ``N(0, initializer_range)`` (biases zero), norm
    weights set to 1; drawn on the CPU from ``seed`` (the global RNG state is left untouched),
    so the result is the same in every fold and process.
    """
    std = float(model.config.initializer_range)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.copy_(torch.randn(module.weight.shape) * std)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif "norm" in type(module).__name__.lower():
                for name, param in module.named_parameters(recurse=False):
                    param.fill_(1.0 if name == "weight" else 0.0)


def prepare_llm(model: nn.Module, cfg: ModelConfig) -> None:
    """Shape a loaded frozen base for an LLM reader (in place).

    In order: cut to ``model.llm.readout_layer`` layers (``readout: layer``), re-initialise
    (``reader: llm_reinit``), then make what ``model.llm.tuning`` says trainable (LoRA adapters,
    the norm weights, or nothing).
    """
    llm = cfg.llm
    if llm.readout == "layer":
        cut_layers(model, llm.readout_layer)
    if cfg.reader == "llm_reinit":
        reinit_llm(model, cfg.reader_seed)
    if llm.tuning == "lora":
        attach_lora(model, llm.lora)
    elif llm.tuning == "norms":
        train_norms(model)


@dataclass(eq=False)
class ReaderParts:
    """What a model's reader is made of.

    Attributes:
        hidden: The visual token's width (the configured LLM's hidden size).
        llm: The shaped LLM of an LLM reader, else None.
        identity: The loaded base LLM's identity (see :class:`~au_llm.model.llm.BaseLLM`); None
            when no weights were loaded.
        control: A control reader's module (None for an LLM reader and for ``none``).
        prompt_embeds: ``[P, H]`` float32 LLM embeddings of the prompt ids (visual slots
            removed), for the attention readers; else None.
    """

    hidden: int
    llm: nn.Module | None = None
    identity: dict[str, Any] | None = None
    control: nn.Module | None = None
    prompt_embeds: Tensor | None = None


def build_reader(cfg: ModelConfig, prompt_ids: Tensor | None) -> ReaderParts:
    """The reader of ``cfg.reader``: an LLM loaded and shaped (:func:`prepare_llm`), or a control.

    Args:
        cfg: The model configuration.
        prompt_ids: ``[P]`` the prompt's ids without its visual slots, for a reader of the
            prompt; None otherwise.

    Returns:
        The parts; the LLM's weights are loaded only by readers that run it or read its
        embeddings (``none``, ``mlp`` and ``resmlp`` read only its configuration).
    """
    if not cfg.reads_prompt:
        config = llm_config(cfg.llm)
        return ReaderParts(int(config.hidden_size), control=build_control(cfg, config))
    base = load_base_llm(cfg.llm)
    if cfg.has_llm:
        prepare_llm(base.model, cfg)
        return ReaderParts(base.hidden_size, base.model, base.identity)
    assert prompt_ids is not None
    with torch.no_grad():
        embeds = base.model.get_input_embeddings()(prompt_ids).float()
    control = build_control(cfg, base.model.config)
    return ReaderParts(base.hidden_size, None, base.identity, control, embeds)
