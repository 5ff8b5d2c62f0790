"""AU-LLM: clip -> 3D-CNN -> Enhanced Fusion Projector -> visual token -> LoRA LLM -> AU scores.

The whole model in one file, in the manner of Hugging Face's LLaVA modeling file:
:meth:`AULLM.get_clip_features` runs the backbone, :meth:`AULLM.get_visual_tokens` the projector,
and :func:`merge_visual_tokens` is where visual tokens enter the LLM (with a count check against
the prompt's visual slots). A linear head reads the last position's final (post-norm) hidden state.

Prompt layout: ``cfg.llm.prompt`` followed by the visual token(s) (the paper's layout), or, if
the prompt contains ``cfg.llm.placeholder``, the visual tokens replace the placeholders in order.

Two equivalent LLM paths:

* straightforward (``fast_path: false``): tokenise the prompt, embed it for every sample, run the
  full causal LM on ``[prompt, visual]`` with ``output_hidden_states`` (vocabulary logits for every
  position included) and read ``hidden_states[-1]``.
* fast (``fast_path: true``, default): the prompt ids are tokenised once (a buffer); only the
  decoder body runs (no vocabulary logits); the text before the first visual token (the prefix) runs
  once per forward with batch size 1 and ``use_cache``; its key/value cache is expanded to the batch
  and only the visual token(s) and any later text run per sample, at positions after the prefix.
  During training the prefix pass runs every step with gradients (LoRA changes its keys/values; its
  LoRA-dropout mask is then shared by the batch). In eval mode without gradients the prefix
  keys/values are kept and reused until the LoRA weights change (tracked by their version
  counters) or ``train()``, ``reset_trainable`` or ``load_state_dict`` is called. Each forward
  builds a fresh cache object, since appending to a cache mutates it.

``llm.source: none`` is the ablation without an LLM: the same projector (output width
``llm.tiny.hidden_size``) feeds a linear head directly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from au_llm.config import ModelConfig
from au_llm.model.backbones import build_backbone, reset_backbone
from au_llm.model.llm import (
    BaseLLM,
    attach_lora,
    cast_frozen_base,
    load_base_llm,
    lora_parameters,
    reset_lora,
)
from au_llm.model.projector import EnhancedFusionProjector

logger = logging.getLogger(__name__)


def split_prompt(prompt: str, placeholder: str, n_visual_tokens: int) -> list[str]:
    """Split the prompt into the text segments around the visual tokens.

    Args:
        prompt: Prompt text, optionally with ``placeholder`` markers.
        placeholder: Marker of a visual token.
        n_visual_tokens: Visual tokens per clip.

    Returns:
        ``n_visual_tokens + 1`` segments: text before the first visual token, between tokens, and
        after the last one (empty strings where nothing is there).

    Raises:
        ValueError: If the prompt has placeholders but not exactly ``n_visual_tokens`` of them.
    """
    if placeholder and placeholder in prompt:
        parts = prompt.split(placeholder)
        if len(parts) - 1 != n_visual_tokens:
            raise ValueError(
                f"model.llm.prompt has {len(parts) - 1} {placeholder!r} placeholder(s) but "
                f"model.llm.n_visual_tokens = {n_visual_tokens}; they must be equal"
            )
        return parts
    return [prompt] + [""] * n_visual_tokens


def merge_visual_tokens(text: list[Tensor], visual: Tensor) -> Tensor:
    """Interleave text embeddings and visual tokens: ``[text0, v1, text1, ..., vn, textn]``.

    Args:
        text: ``n + 1`` text-segment embeddings, each ``[L_i, H]`` (``L_i`` may be 0).
        visual: ``[B, n, H]`` visual tokens.

    Returns:
        ``[B, sum(L_i) + n, H]`` input embeddings.

    Raises:
        ValueError: If the number of visual tokens differs from the prompt's visual slots.
    """
    n_slots = len(text) - 1
    if visual.shape[1] != n_slots:
        raise ValueError(
            f"got {visual.shape[1]} visual token(s) per clip but the prompt has {n_slots} "
            "visual slot(s)"
        )
    batch = visual.shape[0]
    parts = [text[0].unsqueeze(0).expand(batch, -1, -1)]
    for i in range(n_slots):
        parts.append(visual[:, i : i + 1])
        parts.append(text[i + 1].unsqueeze(0).expand(batch, -1, -1))
    return torch.cat(parts, dim=1)


class AULLM(nn.Module):
    """The AU-LLM model: backbone -> projector -> (LoRA LLM) -> linear head, one score per AU.

    Args:
        cfg: Model configuration.
        n_aus: Number of AUs (outputs).
        in_channels: Clip channels (1 gray, 3 RGB).
        n_frames: Frames per clip.
        size: Frame side in pixels.
        base: The shared frozen base LLM, or None when ``cfg.llm.source == "none"``. Building the
            model injects fresh LoRA adapters into ``base`` (any earlier model on it stops working).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        n_aus: int,
        in_channels: int,
        n_frames: int,
        size: int,
        base: BaseLLM | None,
    ) -> None:
        super().__init__()
        if (base is None) != (cfg.llm.source == "none"):
            raise ValueError(
                f"model.llm.source = {cfg.llm.source!r} but base LLM is "
                f"{'missing' if base is None else 'given'}"
            )
        if n_aus < 1:
            raise ValueError(f"n_aus = {n_aus}: expected at least one AU")
        self.cfg = cfg
        self.n_aus = n_aus
        self.clip_shape = (in_channels, n_frames, size, size)
        n_tokens = cfg.llm.n_visual_tokens
        hidden = base.hidden_size if base is not None else cfg.llm.tiny.hidden_size
        self.backbone = build_backbone(cfg.backbone, in_channels, n_frames, size)
        self.projector = EnhancedFusionProjector(
            self.backbone.mid_dim, self.backbone.high_dim, hidden, cfg.projector, n_tokens
        )
        self._base = base
        self._owner: object | None = None
        self._segment_lengths: tuple[int, ...] = ()
        self._prefix_cache: tuple[tuple[Any, ...], list[tuple[Tensor, Tensor]]] | None = None
        if base is None:
            self.llm: nn.Module | None = None
            self.head = nn.Linear(n_tokens * hidden, n_aus)
            return
        segments = split_prompt(cfg.llm.prompt, cfg.llm.placeholder, n_tokens)
        ids = self._tokenize(segments)
        self.register_buffer("prompt_ids", torch.cat(ids), persistent=False)
        self._segment_lengths = tuple(len(seg) for seg in ids)
        self._owner = attach_lora(base, cfg.llm.lora)
        self.llm = base.model
        self.head = nn.Linear(hidden, n_aus)

    @property
    def base_identity(self) -> dict[str, Any] | None:
        """Identity of the base LLM (source, path, config hash, seed), None without an LLM."""
        return dict(self._base.identity) if self._base is not None else None

    # ----------------------------------------------------------------------------- vision side
    def get_clip_features(self, clips: Tensor) -> dict[str, Tensor]:
        """Run the backbone: ``[B, C, T, H, W]`` -> ``{"mid": [B, m], "high": [B, h]}``."""
        self._check_clips(clips)
        return self.backbone.get_clip_features(clips)

    def get_visual_tokens(self, clips: Tensor) -> Tensor:
        """Run backbone and projector: ``[B, C, T, H, W]`` -> ``[B, n_visual_tokens, hidden]``."""
        features = self.get_clip_features(clips)
        return self.projector(features["mid"], features["high"])

    # ----------------------------------------------------------------------------- forward
    def forward(self, clips: Tensor) -> Tensor:
        """Score every AU for a batch of clips.

        Args:
            clips: ``[B, C, T, H, W]`` float32 clips in [0, 1].

        Returns:
            ``[B, n_aus]`` logits.
        """
        tokens = self.get_visual_tokens(clips)
        if self.llm is None:
            return self.head(tokens.flatten(1))
        self._check_owner()
        if self.cfg.llm.fast_path:
            hidden = self._last_hidden_fast(tokens)
        else:
            hidden = self._last_hidden_straightforward(tokens)
        return self.head(hidden.to(self.head.weight.dtype))

    def _last_hidden_straightforward(self, tokens: Tensor) -> Tensor:
        """Full causal LM on ``[prompt, visual]``; returns the last final hidden state [B, H]."""
        embed = self.llm.get_input_embeddings()
        segments = split_prompt(self.cfg.llm.prompt, self.cfg.llm.placeholder, tokens.shape[1])
        ids = [seg.to(tokens.device) for seg in self._tokenize(segments)]
        text = [embed(seg) for seg in ids]
        inputs = merge_visual_tokens(text, tokens.to(embed.weight.dtype))
        outputs = self.llm(inputs_embeds=inputs, output_hidden_states=True)
        return outputs.hidden_states[-1][:, -1]

    def _last_hidden_fast(self, tokens: Tensor) -> Tensor:
        """Decoder body with a shared prompt cache; returns the last final hidden state [B, H]."""
        from transformers import DynamicCache

        decoder = self.llm.get_decoder()
        embed = self.llm.get_input_embeddings()
        text = list(torch.split(embed(self.prompt_ids), self._segment_lengths))
        prefix_len = self._segment_lengths[0]
        suffix = merge_visual_tokens(
            [text[0][:0], *text[1:]], tokens.to(embed.weight.dtype)
        )  # [B, S, H]
        batch, length = suffix.shape[:2]
        if prefix_len == 0:
            return decoder(inputs_embeds=suffix, use_cache=False).last_hidden_state[:, -1]
        prefix_kv = self._prefix_key_values(decoder, text[0])
        cache = DynamicCache(
            ddp_cache_data=[
                (k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in prefix_kv
            ],
            config=decoder.config,
        )
        positions = torch.arange(prefix_len, prefix_len + length, device=suffix.device)
        outputs = decoder(
            inputs_embeds=suffix,
            past_key_values=cache,
            position_ids=positions.unsqueeze(0).expand(batch, -1),
            use_cache=True,
        )
        return outputs.last_hidden_state[:, -1]

    def _prefix_key_values(self, decoder: nn.Module, prefix: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Keys/values ``[1, kv_heads, P, d]`` per layer of the prompt prefix ``[P, H]``."""
        reusable = not self.training and not torch.is_grad_enabled()
        key = self._prefix_cache_key(prefix) if reusable else None
        if reusable and self._prefix_cache is not None and self._prefix_cache[0] == key:
            return self._prefix_cache[1]
        positions = torch.arange(prefix.shape[0], device=prefix.device).unsqueeze(0)
        outputs = decoder(inputs_embeds=prefix.unsqueeze(0), position_ids=positions, use_cache=True)
        key_values = [(layer.keys, layer.values) for layer in outputs.past_key_values.layers]
        self._prefix_cache = (key, key_values) if reusable else None
        return key_values

    def _prefix_cache_key(self, prefix: Tensor) -> tuple[Any, ...]:
        versions = tuple(p._version for p in lora_parameters(self.llm))
        return (prefix.device, prefix.dtype, id(self._owner), versions)

    # ----------------------------------------------------------------------------- training API
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Backbone, projector, head and LoRA parameters (the frozen base is excluded)."""
        self._check_owner()
        return [p for p in self.parameters() if p.requires_grad]

    def reset_trainable(self, seed: int) -> None:
        """Re-initialise backbone, projector, head and LoRA from ``seed`` (as a fresh build does).

        Values are drawn on the CPU (then copied to the model's device), so they do not depend on
        the device; the global RNG state is left untouched. ``backbone.pretrained_path`` is
        reloaded.
        """
        self._check_owner()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module, reset in (
                (self.backbone, lambda: reset_backbone(self.backbone, self.cfg.backbone)),
                (self.projector, self.projector.reset_parameters),
                (self.head, self.head.reset_parameters),
            ):
                _reset_on_cpu(module, reset)
            if self.llm is not None:
                reset_lora(self.llm)
        self._prefix_cache = None

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """Every trainable weight and backbone buffer, keyed as in ``state_dict()`` (no base)."""
        state: dict[str, Tensor] = {}
        for prefix in ("backbone", "projector", "head"):
            for key, value in getattr(self, prefix).state_dict().items():
                state[f"{prefix}.{key}"] = value
        if self.llm is not None:
            adapters = {id(p) for p in lora_parameters(self.llm)}
            for key, param in self.llm.named_parameters():
                if id(param) in adapters:
                    state[f"llm.{key}"] = param.detach()
        return state

    def load_trainable_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Load weights saved by :meth:`trainable_state_dict` (keys and shapes must match).

        Raises:
            ValueError: For missing or unexpected keys or a shape mismatch.
        """
        own = self.trainable_state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or wrong:
            raise ValueError(
                f"trainable weights do not fit the model: missing {missing[:5]}, unexpected "
                f"{unexpected[:5]}, shape mismatches {wrong[:5]}"
            )
        with torch.no_grad():
            for key, value in own.items():
                value.copy_(state[key])
        self._prefix_cache = None

    # ----------------------------------------------------------------------------- nn.Module hooks
    def train(self, mode: bool = True) -> AULLM:
        """Set train/eval mode; drops the inference prompt cache."""
        self._prefix_cache = None
        return super().train(mode)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """``nn.Module.load_state_dict`` that also drops the inference prompt cache."""
        self._prefix_cache = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _apply(self, fn: Any, recurse: bool = True) -> AULLM:
        """After ``.to()``/``.cuda()``: keep the frozen base in bf16 on GPU (if ``llm.bf16``)."""
        super()._apply(fn, recurse)
        self._prefix_cache = None
        if self.llm is not None:
            weight = self.head.weight
            use_bf16 = weight.device.type == "cuda" and self.cfg.llm.bf16
            cast_frozen_base(self.llm, torch.bfloat16 if use_bf16 else weight.dtype)
        return self

    # ----------------------------------------------------------------------------- helpers
    def _tokenize(self, segments: list[str]) -> list[Tensor]:
        assert self._base is not None
        return [
            torch.tensor(
                self._base.tokenizer.encode(seg, add_special_tokens=i == 0), dtype=torch.long
            )
            for i, seg in enumerate(segments)
        ]

    def _check_clips(self, clips: Tensor) -> None:
        if clips.dim() != 5 or tuple(clips.shape[1:]) != self.clip_shape:
            c, t, h, w = self.clip_shape
            raise ValueError(
                f"clips: expected [B, {c}, {t}, {h}, {w}] (B, C, T, H, W), got {tuple(clips.shape)}"
            )

    def _check_owner(self) -> None:
        if self._base is not None and self._base.owner is not self._owner:
            raise RuntimeError(
                "this AULLM's LoRA adapters were replaced: a newer model was built on the same "
                "cached base LLM (one model per base at a time); use the newer model, or "
                "reset_trainable() instead of building a second one"
            )


def _reset_on_cpu(module: nn.Module, reset: Any) -> None:
    """Run ``reset`` with ``module`` temporarily on the CPU (device-independent random values)."""
    tensors = [*module.parameters(), *module.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    if device.type == "cpu":
        reset()
        return
    module.to("cpu")
    reset()
    module.to(device)


def build_au_llm(
    cfg: ModelConfig, n_aus: int, in_channels: int, n_frames: int, size: int, seed: int
) -> AULLM:
    """Build an AU-LLM model on the cached base LLM, with trainable weights drawn from ``seed``.

    Args:
        cfg: Model configuration.
        n_aus: Number of AUs.
        in_channels: Clip channels (1 or 3).
        n_frames: Frames per clip.
        size: Frame side in pixels.
        seed: Seed of the trainable weights (equal to ``reset_trainable(seed)``).

    Returns:
        The model on the CPU, in training mode.
    """
    base = None if cfg.llm.source == "none" else load_base_llm(cfg.llm)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AULLM(cfg, n_aus, in_channels, n_frames, size, base)
    model.reset_trainable(seed)
    return model
