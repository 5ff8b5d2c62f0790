"""AU-LLM: clip -> 3D-CNN -> Enhanced Fusion Projector -> visual token -> LoRA LLM -> AU scores.

The model in the manner of Hugging Face's LLaVA modeling file: :meth:`AULLM.get_clip_features`
runs the backbone, :meth:`AULLM.get_visual_tokens` the projector, and
:func:`~au_llm.model.visual_slots.merge_visual_tokens` is where visual tokens enter the LLM (with a
count check against the prompt's visual slots). A linear head reads the last position's final
(post-norm) hidden state.

Prompt layout: the text processor (:mod:`au_llm.model.processing_au_llm`) owns the tokenizer and
gives the model its prompt as token ids, with
:data:`~au_llm.model.visual_slots.VISUAL_TOKEN_ID` at each visual slot (the
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
  step, and its LoRA-dropout mask is shared by the batch) while that sequence is short; a longer
  one (long suffixes such as AU queries, large batches) runs the prefix once with gradients and
  then the suffixes after it (:func:`~au_llm.model.packed.worth_packing`). At inference the
  caller computes the prefix's keys/values once with :meth:`AULLM.prompt_cache` and passes them
  to every forward call (:class:`~au_llm.model.engine.PromptCache`); the model keeps no cache.

The model owns its LLM: :class:`AULLM` loads the frozen base in its constructor and injects its own
LoRA adapters, so any number of models live side by side. :meth:`AULLM.place` moves a model to a
device, resolves ``train.precision`` there (:mod:`au_llm.model.precision`; the result is
``model.precision``) and casts the frozen base to it: an explicit step, not a side effect of
``.to()``. Logits are returned in float32 under every precision.

What reads the visual token(s) is ``model.reader`` (:mod:`au_llm.model.readers`): the LLM above
(also re-initialised, or after a random prompt), or a control: none (the head reads the token(s)),
an MLP, a residual MLP, one attention or transformer layer. The head reads the LLM's final hidden
state, or another layer's or a learnt mix of layers (``model.llm.readout``,
:mod:`au_llm.model.readout`); with ``model.au_queries`` each AU's row of the head reads the hidden
state at the end of its own query segment, placed after the visual token(s). With
``model.vision_head`` a second linear head reads the visual token(s) (:meth:`AULLM.vision_logits`).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from au_llm.model.backbones import build_backbone, reset_backbone
from au_llm.model.engine import PromptCache
from au_llm.model.llm import cast_frozen_base, norm_parameters, reset_lora
from au_llm.model.packed import packed_decode, unpack_suffix, worth_packing
from au_llm.model.precision import autocast_off, base_dtype, fp32_linear, resolve_precision
from au_llm.model.projector import EnhancedFusionProjector
from au_llm.model.readers import build_reader
from au_llm.model.readout import LayerMix, ReadNorm, layer_outputs
from au_llm.model.spec import ModelSpec
from au_llm.model.visual_slots import merge_visual_tokens, split_prompt_ids

if TYPE_CHECKING:
    from transformers import Cache

logger = logging.getLogger(__name__)


class AULLM(nn.Module):
    """The AU-LLM model: backbone -> projector -> reader (LoRA LLM) -> head, one score per AU.

    Args:
        spec: What to build (model config, AUs, clip shape). With an LLM reader, its frozen base
            is loaded here and shaped for the reader (:func:`~au_llm.model.readers.prepare_llm`:
            its own LoRA adapters by default).
        prompt_ids: ``[P]`` the prompt's token ids with
            :data:`~au_llm.model.visual_slots.VISUAL_TOKEN_ID` at each visual slot (the text
            processor's ``prompt_ids``); needed by a reader of the prompt
            (``ModelConfig.reads_prompt``), unused otherwise.
        query_ids: With ``model.au_queries``, one id segment ``[L_i]`` per AU (the processor's
            ``query_ids``), in AU order.

    Raises:
        ValueError: ``prompt_ids`` missing for a reader of the prompt, or with another number of
            visual slots than ``model.llm.n_visual_tokens``; query segments missing or not one
            per AU with ``model.au_queries``.
    """

    def __init__(
        self,
        spec: ModelSpec,
        prompt_ids: Tensor | None = None,
        query_ids: list[Tensor] | None = None,
    ) -> None:
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
        self._query_lengths: tuple[int, ...] = ()
        self._norm_init: list[Tensor] = []
        self.llm: nn.Module | None = None
        self.reader: nn.Module | None = None
        self.readout_mix: LayerMix | None = None
        # The prompt's (frozen) LLM embeddings, read by an attention control reader.
        self.register_buffer("prompt_embeds", None, persistent=False)
        if cfg.reads_prompt:
            if prompt_ids is None:
                raise ValueError("a model whose reader reads the prompt needs prompt_ids")
            segments = split_prompt_ids(prompt_ids.cpu().long(), n_tokens)
            self.register_buffer("prompt_ids", torch.cat(segments), persistent=False)
            self._segment_lengths = tuple(len(seg) for seg in segments)
        parts = build_reader(cfg, self.prompt_ids if cfg.reads_prompt else None)
        self.llm, self.reader, self._identity = parts.llm, parts.control, parts.identity
        hidden = parts.hidden
        if parts.prompt_embeds is not None:
            self.register_buffer("prompt_embeds", parts.prompt_embeds, persistent=False)
        if self.llm is not None:
            if cfg.llm.tuning == "norms":
                self._norm_init = [p.detach().clone() for p in norm_parameters(self.llm)]
            self._set_queries(query_ids)
            if cfg.llm.readout == "mix":
                self.readout_mix = LayerMix(len(self.llm.get_decoder().layers))
        self.projector = EnhancedFusionProjector(
            self.backbone.mid_dim, self.backbone.high_dim, hidden, cfg.projector, n_tokens
        )
        reads_one = self.llm is not None or self.prompt_embeds is not None
        self.head = nn.Linear(hidden if reads_one else n_tokens * hidden, spec.n_aus)
        # model.skip_head (departs from AU-LLM): a second linear map reads the visual token(s)
        # directly and is added to the head on the reader's output.
        with_skip = cfg.skip_head and cfg.reader != "none"
        self.skip = nn.Linear(n_tokens * hidden, spec.n_aus) if with_skip else None
        self.vision_head = nn.Linear(n_tokens * hidden, spec.n_aus) if cfg.vision_head else None
        self.head_norm = ReadNorm(self.head.in_features) if cfg.head_norm else None

    def _set_queries(self, query_ids: list[Tensor] | None) -> None:
        """Keep the AU query segments' ids (``model.au_queries``) as one buffer."""
        if not self.cfg.au_queries:
            return
        if not query_ids or len(query_ids) != self.n_aus:
            raise ValueError(
                f"model.au_queries: expected one query segment per AU ({self.n_aus}), got "
                f"{len(query_ids or [])} (see AULLMProcessor.query_ids)"
            )
        self.register_buffer("query_ids", torch.cat(query_ids).long(), persistent=False)
        self._query_lengths = tuple(len(ids) for ids in query_ids)

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
            return self.au_logits(self.control_read(tokens), tokens)
        if prompt_cache is not None and torch.is_grad_enabled():
            raise ValueError("a prompt cache is for inference: run under torch.no_grad()")
        return self.au_logits(self._llm_read(tokens, prompt_cache), tokens)

    def vision_logits(self, tokens: Tensor) -> Tensor:
        """The vision head (``model.vision_head``) on visual tokens ``[B, n, H]``: ``[B, n_aus]``.

        Raises:
            ValueError: The model has no vision head.
        """
        if self.vision_head is None:
            raise ValueError("the model has no vision head (model.vision_head: false)")
        return fp32_linear(self.vision_head, tokens.flatten(1))

    def au_logits(self, read: Tensor, tokens: Tensor) -> Tensor:
        """``head(read)``, plus ``skip(tokens [B, n, H])`` with ``model.skip_head``.

        Args:
            read: What the head reads: ``[B, D]`` for every AU, or ``[B, n_aus, D]`` (one state
                per AU, ``model.au_queries``: row ``i`` of the head reads state ``i``).
            tokens: The visual tokens.

        With ``model.head_norm`` the head reads ``read`` standardised. All in float32
        (:func:`~au_llm.model.precision.fp32_linear`).
        """
        if self.head_norm is not None:
            read = self.head_norm(read)
        if read.dim() == 3:
            with autocast_off(read.device.type):
                logits = (read.float() * self.head.weight.float()).sum(-1) + self.head.bias.float()
        else:
            logits = fp32_linear(self.head, read)
        if self.skip is None:
            return logits
        return logits + fp32_linear(self.skip, tokens.flatten(1))

    def control_read(self, tokens: Tensor) -> Tensor:
        """What the head reads under a control reader: ``[B, H]`` or ``[B, n * H]``.

        The attention readers read ``[prompt embeddings, visual tokens]`` and give the last
        position's state ``[B, H]``; the others map each token (``none``: as it is) and give
        them flattened.
        """
        if self.prompt_embeds is not None and self.reader is not None:
            text = list(torch.split(self.prompt_embeds, self._segment_lengths))
            return self.reader(merge_visual_tokens(text, tokens))
        read = self.reader(tokens) if self.reader is not None else tokens
        return read.flatten(1)

    def _llm_read(self, tokens: Tensor, prompt_cache: PromptCache | None) -> Tensor:
        """The LLM's state(s) the head reads: ``[B, H]``, or ``[B, n_aus, H]`` with AU queries.

        Straightforward path: the full causal LM on ``[prompt, suffix]``. Fast path without a
        prompt cache (training): the prefix and every sample's suffix in one packed decoder
        call (:mod:`au_llm.model.packed`) when :func:`worth_packing`, else the prefix's keys and
        values computed now (with gradients); with a cache (or no prefix): the suffix after it.
        """
        suffix = self.suffix_embeds(tokens)
        decoder = self.llm.get_decoder()
        prefix_len = self._segment_lengths[0]
        packed = (
            self.cfg.llm.fast_path
            and prompt_cache is None
            and prefix_len > 0
            and worth_packing(prefix_len, *suffix.shape[:2])
        )
        past = self._past(tokens, prompt_cache) if self.cfg.llm.fast_path and not packed else None
        with layer_outputs(decoder, enabled=self.readout_mix is not None) as layers:
            if not self.cfg.llm.fast_path:
                embed = self.llm.get_input_embeddings()
                prefix = embed(self.prompt_ids[:prefix_len]).expand(suffix.shape[0], -1, -1)
                outputs = self.llm(
                    inputs_embeds=torch.cat([prefix, suffix], 1), output_hidden_states=True
                )
                full = outputs.hidden_states[-1]

                def suffix_of(hidden: Tensor) -> Tensor:
                    return hidden[:, prefix_len:]

            elif packed:
                prefix = self.llm.get_input_embeddings()(self.prompt_ids[:prefix_len])
                full = packed_decode(decoder, prefix, suffix)

                def suffix_of(hidden: Tensor) -> Tensor:
                    return unpack_suffix(hidden, prefix_len, suffix.shape[0])

            else:
                full, _ = self._decode(suffix, past)

                def suffix_of(hidden: Tensor) -> Tensor:
                    return hidden

        return self._read(suffix_of(full), [suffix_of(h) for h in layers])

    def _read(self, hidden: Tensor, layers: list[Tensor]) -> Tensor:
        """The read-out from the suffix's final states ``[B, S', H]`` (``S' >= S``).

        Args:
            hidden: Final (post-norm) hidden states of the suffix (and any text after it).
            layers: With ``readout: mix``, every layer's output states at the same positions
                (before the final norm); empty otherwise.

        Returns:
            ``[B, H]`` at the suffix's last position, or ``[B, n_aus, H]`` at the end of each
            AU's query segment.
        """
        offsets = [self.suffix_length - 1]
        if self._query_lengths:
            start = self.suffix_length - sum(self._query_lengths) - 1
            offsets = [start + end for end in itertools.accumulate(self._query_lengths)]
        if self.readout_mix is not None:
            decoder = self.llm.get_decoder()
            if len(layers) != len(decoder.layers):
                raise RuntimeError(f"{len(layers)} layer outputs for {len(decoder.layers)} layers")
            norm = decoder.norm
            read = self.readout_mix(torch.stack([norm(states[:, offsets]) for states in layers]))
        else:
            read = hidden[:, offsets]
        return read if self._query_lengths else read[:, 0]

    @property
    def suffix_length(self) -> int:
        """Tokens after the prompt prefix: visual tokens, the prompt text after them, AU queries."""
        return (
            self.cfg.llm.n_visual_tokens + sum(self._segment_lengths[1:]) + sum(self._query_lengths)
        )

    def suffix_embeds(self, tokens: Tensor) -> Tensor:
        """``[B, S, H]``: the visual tokens ``[B, n, H]`` merged with the prompt text after them.

        With ``model.au_queries`` the AU query segments follow.
        """
        embed = self.llm.get_input_embeddings()
        text = list(torch.split(embed(self.prompt_ids), self._segment_lengths))
        suffix = merge_visual_tokens([text[0][:0], *text[1:]], tokens.to(embed.weight.dtype))
        if not self._query_lengths:
            return suffix
        queries = embed(self.query_ids).unsqueeze(0).expand(suffix.shape[0], -1, -1)
        return torch.cat([suffix, queries], dim=1)

    def _past(self, tokens: Tensor, prompt_cache: PromptCache | None) -> Any:
        """The prefix's key/value cache for a batch (computed now when not given), or None."""
        prefix_len = self._segment_lengths[0]
        if prefix_len == 0:
            return None
        if prompt_cache is None:
            embed = self.llm.get_input_embeddings()
            prompt_cache = PromptCache.of(
                self.llm.get_decoder(), embed(self.prompt_ids[:prefix_len])
            )
        elif prompt_cache.length != prefix_len:
            raise ValueError(
                f"prompt cache of {prompt_cache.length} tokens, but the prompt prefix has "
                f"{prefix_len}: it was computed for another model"
            )
        return prompt_cache.for_batch(tokens.shape[0], self.llm.config)

    def _decode(self, embeds: Tensor, past: Any) -> tuple[Tensor, Any]:
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
            ``(au_logits [B, n_aus], lm_logits)``: the linear head on the suffix's read-out
            (what :meth:`forward` gives; later text cannot change it in a causal LM), and the
            LM head's next-token logits: ``[B, L, V]`` for every position of ``text_ids``, or
            ``[K, V]`` for the ``K`` kept positions in row-major order.
        """
        suffix = self.suffix_embeds(tokens)
        embed = self.llm.get_input_embeddings()
        past = self._past(tokens, None)  # the prefix's pass is not read
        with layer_outputs(self.llm.get_decoder(), enabled=self.readout_mix is not None) as layers:
            hidden, _ = self._decode(torch.cat([suffix, embed(text_ids)], dim=1), past)
        au_logits = self.au_logits(self._read(hidden, layers), tokens)
        last = suffix.shape[1] - 1
        text_hidden = hidden[:, last : last + text_ids.shape[1]]
        if keep is not None:
            text_hidden = text_hidden[keep.to(text_hidden.device)]
        lm_logits = fp32_linear(self.llm.get_output_embeddings(), text_hidden)
        return au_logits, lm_logits

    def prefill(
        self, tokens: Tensor, text_ids: Tensor, *, prompt_cache: PromptCache | None = None
    ) -> tuple[Cache, Tensor]:
        """The first step of decoding: the prompt, each clip's visual tokens, then ``text_ids``.

        Args:
            tokens: ``[B, n, H]`` visual tokens (:meth:`get_visual_tokens`).
            text_ids: ``[L]`` ids that follow for every clip (an instruction).
            prompt_cache: The prompt prefix's keys/values (:meth:`prompt_cache`; None computes
                them).

        Returns:
            ``(cache, logits)``: the key/value cache of every position so far, for
            :meth:`decode_step`, and the float32 next-token logits ``[B, V]``.
        """
        embed = self.llm.get_input_embeddings()
        text = embed(text_ids.to(tokens.device)).unsqueeze(0).expand(tokens.shape[0], -1, -1)
        embeds = torch.cat([self.suffix_embeds(tokens), text], dim=1)
        hidden, cache = self._decode(embeds, self._past(tokens, prompt_cache))
        return cache, fp32_linear(self.llm.get_output_embeddings(), hidden[:, -1])

    def decode_step(self, token_ids: Tensor, cache: Cache) -> tuple[Cache, Tensor]:
        """One decoding step: token ``token_ids`` ``[B]`` after what ``cache`` holds.

        Returns:
            ``(cache, logits)``: the cache extended (in place) and the float32 next-token logits
            ``[B, V]``.
        """
        embeds = self.llm.get_input_embeddings()(token_ids).unsqueeze(1)
        hidden, cache = self._decode(embeds, cache)
        return cache, fp32_linear(self.llm.get_output_embeddings(), hidden[:, -1])

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
            return PromptCache.of(self.llm.get_decoder(), prefix)

    # ----------------------------------------------------------------------------- training API
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Every parameter that trains: backbone, projector, heads, reader (not the frozen base)."""
        return [p for p in self.parameters() if p.requires_grad]

    def reset_trainable(self, seed: int) -> None:
        """Re-initialise every trainable part from ``seed`` (as a fresh build does).

        Backbone, projector, heads, control reader, readout mix and LoRA are drawn anew; trained
        norm weights (``model.llm.tuning: norms``) go back to the base's values. Values are drawn
        on the CPU (then copied to the model's device), so they do not depend on the device; the
        global RNG state is left untouched. ``backbone.pretrained_path`` is reloaded.
        """
        optional = (self.skip, self.vision_head, self.head_norm, self.reader, self.readout_mix)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module, reset in (
                (self.backbone, lambda: reset_backbone(self.backbone, self.cfg.backbone)),
                (self.projector, self.projector.reset_parameters),
                (self.head, self.head.reset_parameters),
                *[(m, m.reset_parameters) for m in optional if m is not None],
            ):
                _reset_on_cpu(module, reset)
            if self.llm is not None:
                reset_lora(self.llm)
        if self._norm_init:
            with torch.no_grad():
                for param, value in zip(norm_parameters(self.llm), self._norm_init, strict=True):
                    param.copy_(value)

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """Every trainable weight and backbone buffer, keyed as in ``state_dict()`` (no base).

        Every part outside the LLM is saved whole (with BatchNorm statistics); of the LLM, only
        its trainable parameters (LoRA adapters, trained norm weights).
        """
        state: dict[str, Tensor] = {}
        for prefix, module in self.named_children():
            if module is self.llm:
                for key, param in module.named_parameters():
                    if param.requires_grad:
                        state[f"llm.{key}"] = param.detach()
                continue
            for key, value in module.state_dict().items():
                state[f"{prefix}.{key}"] = value
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
    query_ids: list[Tensor] | None = None,
) -> AULLM:
    """Build an AU-LLM model (its own base LLM) with trainable weights drawn from ``seed``.

    Args:
        spec: What to build.
        seed: Seed of the trainable weights (equal to ``reset_trainable(seed)``).
        device: Where to place it (see :meth:`AULLM.place`).
        precision: ``auto``, ``fp32`` or ``bf16`` (see :meth:`AULLM.place`).
        prompt_ids: ``[P]`` prompt ids with visual slots (see :class:`AULLM`); needed by a
            reader of the prompt.
        query_ids: AU query segments' ids (``model.au_queries``, see :class:`AULLM`).

    Returns:
        The model on ``device``, in training mode.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AULLM(spec, prompt_ids, query_ids)
    model.reset_trainable(seed)
    return model.place(device, precision)
