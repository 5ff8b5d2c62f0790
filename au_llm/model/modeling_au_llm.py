"""AU-LLM: clip -> 3D-CNN -> Enhanced Fusion Projector -> visual token -> LoRA LLM -> AU scores.

The whole model in one file, in the manner of Hugging Face's LLaVA modeling file:
:meth:`AULLM.get_clip_features` runs the backbone, :meth:`AULLM.get_visual_tokens` the projector,
and :func:`merge_visual_tokens` is where visual tokens enter the LLM (with a count check against
the prompt's visual slots). A linear head reads the last position's final (post-norm) hidden state.

Prompt layout: the text processor (:mod:`au_llm.model.processing_au_llm`) owns the tokenizer and
gives the model its prompt as token ids, with :data:`VISUAL_TOKEN_ID` at each visual slot (the
paper's layout puts the visual token after the prompt); the model splits the ids there and
checks that their count equals ``n_visual_tokens``. Text answers and explanations reach the model
as teacher-forcing ids from the processor; the model knows no instruction, answer or tokenizer.

Two equivalent LLM paths:

* straightforward (``fast_path: false``): embed the prompt ids for every sample, run the full
  causal LM on ``[prompt, visual]`` with ``output_hidden_states`` (vocabulary logits for every
  position included) and read ``hidden_states[-1]``.
* fast (``fast_path: true``, default): only the decoder body runs (no vocabulary logits); the
  text before the first visual token (the prefix) is computed once per forward, and only the
  visual token(s) and any later text run per sample, at positions after the prefix. During
  training (no prompt cache) the prefix and all samples' suffixes run as one packed sequence with
  a block attention mask (:mod:`au_llm.model.packed`; LoRA changes the prefix's keys/values every
  step, and its LoRA-dropout mask is shared by the batch). At inference the caller computes the
  prefix's keys/values once with :meth:`AULLM.prompt_cache` and passes them to every forward call
  (:class:`~au_llm.model.engine.PromptCache`); the model itself keeps no cache.

The model owns its LLM: :class:`AULLM` loads the frozen base in its constructor and injects its own
LoRA adapters, so any number of models live side by side. :meth:`AULLM.place` moves a model to a
device, resolves ``train.precision`` there (:mod:`au_llm.model.precision`; the result is
``model.precision``) and casts the frozen base to it: an explicit step, not a side effect of
``.to()``. Logits are returned in float32 under every precision.

``llm.source: none`` is the ablation without an LLM: the same projector (output width
``llm.tiny.hidden_size``) feeds a linear head directly.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from au_llm.model.backbones import build_backbone, reset_backbone
from au_llm.model.engine import PromptCache
from au_llm.model.llm import (
    attach_lora,
    cast_frozen_base,
    load_base_llm,
    lora_parameters,
    reset_lora,
)
from au_llm.model.packed import packed_last_hidden
from au_llm.model.precision import base_dtype, fp32_linear, resolve_precision
from au_llm.model.projector import EnhancedFusionProjector
from au_llm.model.spec import ModelSpec

logger = logging.getLogger(__name__)


# Marks a visual slot in prompt ids (as LLaVA's ``IMAGE_TOKEN_INDEX``): never a vocabulary id.
VISUAL_TOKEN_ID = -200


def split_prompt_ids(prompt_ids: Tensor, n_visual_tokens: int) -> list[Tensor]:
    """Split prompt ids at their visual slots.

    Args:
        prompt_ids: ``[P]`` token ids with :data:`VISUAL_TOKEN_ID` at each visual slot.
        n_visual_tokens: Visual tokens per clip (``model.llm.n_visual_tokens``).

    Returns:
        ``n_visual_tokens + 1`` id segments ``[L_i]``: the text before the first visual token,
        between tokens, and after the last one (empty where nothing is there).

    Raises:
        ValueError: If the ids do not hold exactly ``n_visual_tokens`` visual slots.
    """
    slots = torch.nonzero(prompt_ids == VISUAL_TOKEN_ID).flatten().tolist()
    if len(slots) != n_visual_tokens:
        raise ValueError(
            f"the prompt ids hold {len(slots)} visual slot(s) but model.llm.n_visual_tokens = "
            f"{n_visual_tokens}: visual tokens and their placeholders do not match"
        )
    bounds = [-1, *slots, len(prompt_ids)]
    return [prompt_ids[start + 1 : end] for start, end in itertools.pairwise(bounds)]


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
        spec: What to build (model config, AUs, clip shape). With an LLM, its frozen base is
            loaded here and gets this model's own LoRA adapters.
        prompt_ids: ``[P]`` the prompt's token ids with :data:`VISUAL_TOKEN_ID` at each visual
            slot (the text processor's ``prompt_ids``); needed with an LLM, unused without.

    Raises:
        ValueError: With an LLM, ``prompt_ids`` missing or with another number of visual slots
            than ``model.llm.n_visual_tokens``.
    """

    def __init__(self, spec: ModelSpec, prompt_ids: Tensor | None = None) -> None:
        super().__init__()
        cfg = spec.model
        self.spec = spec
        self.cfg = cfg
        self.n_aus = spec.n_aus
        self.clip_shape = spec.clip_shape
        self.precision = "fp32"  # set by place()
        n_tokens = cfg.llm.n_visual_tokens
        self.backbone = build_backbone(
            cfg.backbone, spec.in_channels, spec.frames_per_clip, spec.size
        )
        self._identity: dict[str, Any] | None = None
        self._segment_lengths: tuple[int, ...] = ()
        if cfg.llm.source == "none":
            hidden = cfg.llm.tiny.hidden_size
            self.llm: nn.Module | None = None
        else:
            if prompt_ids is None:
                raise ValueError("a model with an LLM needs prompt_ids (see AULLMProcessor)")
            segments = split_prompt_ids(prompt_ids.cpu().long(), n_tokens)
            base = load_base_llm(cfg.llm)
            attach_lora(base.model, cfg.llm.lora)
            self.llm, self._identity, hidden = base.model, base.identity, base.hidden_size
            self.register_buffer("prompt_ids", torch.cat(segments), persistent=False)
            self._segment_lengths = tuple(len(seg) for seg in segments)
        self.projector = EnhancedFusionProjector(
            self.backbone.mid_dim, self.backbone.high_dim, hidden, cfg.projector, n_tokens
        )
        self.head = nn.Linear(hidden if self.llm is not None else n_tokens * hidden, spec.n_aus)
        # model.skip_head (departs from AU-LLM): a second linear map reads the visual token(s)
        # directly and is added to the head on the LLM's hidden state.
        with_skip = cfg.skip_head and self.llm is not None
        self.skip = nn.Linear(n_tokens * hidden, spec.n_aus) if with_skip else None

    @property
    def base_identity(self) -> dict[str, Any] | None:
        """Identity of the base LLM (source, path, config hash, seed), None without an LLM."""
        return dict(self._identity) if self._identity is not None else None

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
    def forward(self, clips: Tensor, prompt_cache: PromptCache | None = None) -> Tensor:
        """Score every AU for a batch of clips.

        Args:
            clips: ``[B, C, T, H, W]`` float32 clips in [0, 1].
            prompt_cache: The prompt prefix's keys/values from :meth:`prompt_cache`, computed with
                the current weights (inference only; without it the prefix is recomputed).

        Returns:
            ``[B, n_aus]`` float32 logits.

        Raises:
            ValueError: If a prompt cache is given while gradients are enabled (training must
                recompute the prefix, whose keys/values depend on the LoRA weights).
        """
        return self.score_tokens(self.get_visual_tokens(clips), prompt_cache)

    def score_tokens(self, tokens: Tensor, prompt_cache: PromptCache | None = None) -> Tensor:
        """Score every AU from visual tokens ``[B, n_visual_tokens, hidden]`` (see :meth:`forward`).

        Returns:
            ``[B, n_aus]`` logits.
        """
        if self.llm is None:
            return fp32_linear(self.head, tokens.flatten(1))
        if prompt_cache is not None and torch.is_grad_enabled():
            raise ValueError("a prompt cache is for inference: run under torch.no_grad()")
        if self.cfg.llm.fast_path:
            hidden = self._last_hidden_fast(tokens, prompt_cache)
        else:
            hidden = self._last_hidden_straightforward(tokens)
        return self.au_logits(hidden, tokens)

    def au_logits(self, hidden: Tensor, tokens: Tensor) -> Tensor:
        """``head(hidden [B, H])``, plus ``skip(tokens [B, n, H])`` with ``model.skip_head``.

        Both are computed in float32 (:func:`~au_llm.model.precision.fp32_linear`).
        """
        logits = fp32_linear(self.head, hidden)
        if self.skip is None:
            return logits
        return logits + fp32_linear(self.skip, tokens.flatten(1))

    def _last_hidden_straightforward(self, tokens: Tensor) -> Tensor:
        """Full causal LM on ``[prompt, visual]``; returns the last final hidden state [B, H]."""
        embed = self.llm.get_input_embeddings()
        text = [embed(seg) for seg in torch.split(self.prompt_ids, self._segment_lengths)]
        inputs = merge_visual_tokens(text, tokens.to(embed.weight.dtype))
        outputs = self.llm(inputs_embeds=inputs, output_hidden_states=True)
        return outputs.hidden_states[-1][:, -1]

    def _last_hidden_fast(self, tokens: Tensor, prompt_cache: PromptCache | None) -> Tensor:
        """Decoder body after the prompt prefix; returns the last final hidden state [B, H].

        Without a prompt cache (training), the prefix and every sample's suffix run in one packed
        decoder call (:func:`~au_llm.model.packed.packed_last_hidden`).
        """
        suffix = self.suffix_embeds(tokens)
        prefix_len = self._segment_lengths[0]
        if prompt_cache is None and prefix_len > 0:
            prefix = self.llm.get_input_embeddings()(self.prompt_ids[:prefix_len])
            return packed_last_hidden(self.llm.get_decoder(), prefix, suffix)
        hidden, _ = self.decode(suffix, self._past(tokens, prompt_cache))
        return hidden[:, -1]

    def suffix_embeds(self, tokens: Tensor) -> Tensor:
        """``[B, S, H]``: the visual tokens ``[B, n, H]`` merged with the prompt text after them."""
        embed = self.llm.get_input_embeddings()
        text = list(torch.split(embed(self.prompt_ids), self._segment_lengths))
        return merge_visual_tokens([text[0][:0], *text[1:]], tokens.to(embed.weight.dtype))

    def _past(self, tokens: Tensor, prompt_cache: PromptCache | None) -> Any:
        """The prefix's key/value cache for a batch (computed now when not given), or None."""
        prefix_len = self._segment_lengths[0]
        if prefix_len == 0:
            return None
        if prompt_cache is None:
            embed = self.llm.get_input_embeddings()
            prompt_cache = self._prefix_cache(
                self.llm.get_decoder(), embed(self.prompt_ids[:prefix_len])
            )
        elif prompt_cache.length != prefix_len:
            raise ValueError(
                f"prompt cache of {prompt_cache.length} tokens, but the prompt prefix has "
                f"{prefix_len}: it was computed for another model"
            )
        return prompt_cache.for_batch(tokens.shape[0], self.llm.config)

    def decode(self, embeds: Tensor, past: Any) -> tuple[Tensor, Any]:
        """Run the decoder body on ``embeds`` ``[B, L, H]`` after what ``past`` holds.

        Args:
            embeds: Input embeddings, continuing the sequences in ``past``.
            past: A transformers cache of earlier positions (extended in place), or None.

        Returns:
            ``(hidden [B, L, H], cache)``: final (post-norm) hidden states and the cache.
        """
        start = 0 if past is None else past.get_seq_length()
        batch, length = embeds.shape[:2]
        positions = torch.arange(start, start + length, device=embeds.device)
        outputs = self.llm.get_decoder()(
            inputs_embeds=embeds,
            past_key_values=past,
            position_ids=positions.unsqueeze(0).expand(batch, -1),
            use_cache=True,
        )
        return outputs.last_hidden_state, outputs.past_key_values

    # ----------------------------------------------------------------------------- text answers
    def forward_text_tokens(
        self, tokens: Tensor, text_ids: Tensor, keep: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """One decoder pass for both heads, teacher-forced on ``text_ids``.

        Args:
            tokens: ``[B, n, H]`` visual tokens (:meth:`get_visual_tokens`; computed once, they
                can feed several texts, e.g. an answer and an explanation).
            text_ids: ``[B, L]`` instruction + answer ids (the processor's teacher-forcing ids,
                :meth:`~au_llm.model.processing_au_llm.AULLMProcessor.answer_batch`).
            keep: ``[B, L]`` bool, the positions whose next-token logits are wanted (a loss
                needs only those with a target: ``targets != -100``). The vocabulary projection
                is the largest matrix product of a small LLM, so the positions without a target
                (the instruction) are not projected. None: every position.

        Returns:
            ``(au_logits [B, n_aus], lm_logits)``: the linear head on the visual position's
            hidden state (what :meth:`forward` gives; later text cannot change it in a causal
            LM), and the LM head's next-token logits: ``[B, L, V]`` for every position of
            ``text_ids``, or ``[K, V]`` for the ``K`` kept positions in row-major order.
        """
        suffix = self.suffix_embeds(tokens)
        embed = self.llm.get_input_embeddings()
        hidden, _ = self.decode(
            torch.cat([suffix, embed(text_ids)], dim=1), self._past(tokens, None)
        )
        last = suffix.shape[1] - 1
        au_logits = self.au_logits(hidden[:, last], tokens)
        text_hidden = hidden[:, last : last + text_ids.shape[1]]
        if keep is not None:
            text_hidden = text_hidden[keep.to(text_hidden.device)]
        lm_logits = fp32_linear(self.llm.get_output_embeddings(), text_hidden)
        return au_logits, lm_logits

    def _prefix_cache(self, decoder: nn.Module, prefix: Tensor) -> PromptCache:
        """Run the prompt prefix ``[P, H]`` once (batch 1) and keep its keys/values."""
        positions = torch.arange(prefix.shape[0], device=prefix.device).unsqueeze(0)
        outputs = decoder(inputs_embeds=prefix.unsqueeze(0), position_ids=positions, use_cache=True)
        key_values = tuple((layer.keys, layer.values) for layer in outputs.past_key_values.layers)
        return PromptCache(key_values, prefix.shape[0])

    def prompt_cache(self) -> PromptCache | None:
        """The prompt prefix's keys/values for the current weights, for inference.

        Returns:
            The cache to pass to :meth:`forward`, or None when there is nothing to cache (no LLM,
            the straightforward path, or a prompt that starts with the visual token).

        Raises:
            RuntimeError: In training mode (LoRA dropout would make the cache random).
        """
        if self.llm is None or not self.cfg.llm.fast_path or self._segment_lengths[0] == 0:
            return None
        if self.training:
            raise RuntimeError("prompt_cache() needs eval mode: call model.eval() first")
        with torch.no_grad():
            embed = self.llm.get_input_embeddings()
            prefix = embed(self.prompt_ids[: self._segment_lengths[0]])
            return self._prefix_cache(self.llm.get_decoder(), prefix)

    # ----------------------------------------------------------------------------- training API
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Backbone, projector, head and LoRA parameters (the frozen base is excluded)."""
        return [p for p in self.parameters() if p.requires_grad]

    def reset_trainable(self, seed: int) -> None:
        """Re-initialise backbone, projector, head and LoRA from ``seed`` (as a fresh build does).

        Values are drawn on the CPU (then copied to the model's device), so they do not depend on
        the device; the global RNG state is left untouched. ``backbone.pretrained_path`` is
        reloaded.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module, reset in (
                (self.backbone, lambda: reset_backbone(self.backbone, self.cfg.backbone)),
                (self.projector, self.projector.reset_parameters),
                (self.head, self.head.reset_parameters),
                *([(self.skip, self.skip.reset_parameters)] if self.skip is not None else []),
            ):
                _reset_on_cpu(module, reset)
            if self.llm is not None:
                reset_lora(self.llm)

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """Every trainable weight and backbone buffer, keyed as in ``state_dict()`` (no base)."""
        state: dict[str, Tensor] = {}
        for prefix in ("backbone", "projector", "head", "skip"):
            module = getattr(self, prefix)
            for key, value in (module.state_dict() if module is not None else {}).items():
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

    def place(self, device: torch.device | str, precision: str = "fp32") -> AULLM:
        """Move the model to ``device`` and set its precision (the trainable weights stay fp32).

        Args:
            device: Target device.
            precision: ``auto``, ``fp32`` or ``bf16`` (``train.precision``); ``auto`` is
                resolved for ``device``. The result is kept as ``self.precision`` and the frozen
                base is cast to it.

        Returns:
            The model itself.
        """
        device = torch.device(device)
        self.to(device)
        self.precision = resolve_precision(precision, device)
        if self.llm is not None:
            cast_frozen_base(self.llm, base_dtype(self.precision))
        return self

    # ----------------------------------------------------------------------------- helpers
    def _check_clips(self, clips: Tensor) -> None:
        if clips.dim() != 5 or tuple(clips.shape[1:]) != self.clip_shape:
            c, t, h, w = self.clip_shape
            raise ValueError(
                f"clips: expected [B, {c}, {t}, {h}, {w}] (B, C, T, H, W), got {tuple(clips.shape)}"
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
    spec: ModelSpec,
    seed: int,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    prompt_ids: Tensor | None = None,
) -> AULLM:
    """Build an AU-LLM model (its own base LLM) with trainable weights drawn from ``seed``.

    Args:
        spec: What to build.
        seed: Seed of the trainable weights (equal to ``reset_trainable(seed)``).
        device: Where to place it (see :meth:`AULLM.place`).
        precision: ``auto``, ``fp32`` or ``bf16`` (see :meth:`AULLM.place`).
        prompt_ids: ``[P]`` prompt ids with visual slots (see :class:`AULLM`); needed with an
            LLM.

    Returns:
        The model on ``device``, in training mode.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AULLM(spec, prompt_ids)
    model.reset_trainable(seed)
    return model.place(device, precision)
