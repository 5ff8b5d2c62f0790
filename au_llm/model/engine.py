"""Inference helpers kept apart from the model file: the prompt's key/value cache, generation.

Generation calls only the model's public decoding methods (``prefill``, ``decode_step``).

The prompt text before the first visual token (the prefix) is the same for every clip, so at
inference its keys/values are computed once (:meth:`AULLM.prompt_cache
<au_llm.model.modeling_au_llm.AULLM.prompt_cache>`) and passed to every forward call by whoever runs
the prediction loop. The cache belongs to the weights it was computed with: compute a new one after
any change of the LoRA weights (training, loading a checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from transformers import DynamicCache, PretrainedConfig

    from au_llm.model.modeling_au_llm import AULLM


@dataclass(frozen=True)
class PromptCache:
    """Keys/values of the prompt prefix for one state of the model's weights.

    Attributes:
        key_values: Per decoder layer, ``(keys, values)`` each ``[1, kv_heads, P, head_dim]``.
        length: Prefix length ``P`` in tokens.
    """

    key_values: tuple[tuple[Tensor, Tensor], ...]
    length: int

    @classmethod
    def of(cls, decoder: nn.Module, prefix: Tensor) -> PromptCache:
        """Run the prompt prefix ``[P, H]`` (embeddings) once through ``decoder`` (batch 1)."""
        positions = torch.arange(prefix.shape[0], device=prefix.device).unsqueeze(0)
        outputs = decoder(inputs_embeds=prefix.unsqueeze(0), position_ids=positions, use_cache=True)
        key_values = tuple((layer.keys, layer.values) for layer in outputs.past_key_values.layers)
        return cls(key_values, prefix.shape[0])

    def for_batch(self, batch: int, config: PretrainedConfig) -> DynamicCache:
        """A fresh transformers ``DynamicCache`` holding the prefix for ``batch`` sequences.

        The tensors are expanded (not copied); appending to the returned cache leaves this
        object unchanged, so one :class:`PromptCache` serves any number of calls.
        """
        from transformers import DynamicCache

        return DynamicCache(
            ddp_cache_data=[
                (k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1))
                for k, v in self.key_values
            ],
            config=config,
        )


class AnswerTrie:
    """The token sequences of every well-formed answer, for constrained decoding.

    Args:
        sequences: Token ids of each allowed answer, each ending with the end token.
    """

    def __init__(self, sequences: list[list[int]]) -> None:
        self.root: dict[int, dict] = {}
        self.longest = max((len(sequence) for sequence in sequences), default=0)
        for sequence in sequences:
            node = self.root
            for token in sequence:
                node = node.setdefault(token, {})

    @staticmethod
    def allowed(node: dict[int, dict]) -> list[int]:
        """Tokens that may follow at ``node``."""
        return list(node)


def repeated_tail(tokens: list[int], min_period: int) -> int:
    """The length ``p >= min_period`` of a run that ``tokens`` ends with twice in a row, or 0.

    ``tokens[-p:] == tokens[-2p:-p]`` is a loop: greedy decoding would repeat it to the limit.
    """
    for period in range(min_period, len(tokens) // 2 + 1):
        if tokens[-period:] == tokens[-2 * period : -period]:
            return period
    return 0


def generate_answers(
    model: AULLM,
    tokens: Tensor,
    instruction: Tensor,
    *,
    eos_id: int,
    prompt_cache: PromptCache | None,
    max_new_tokens: int,
    trie: AnswerTrie | None = None,
    stop_repeat: int = 0,
) -> list[list[int]]:
    """Greedy, batched answers to one instruction for clips given by their visual tokens.

    The prompt prefix comes from ``prompt_cache`` (shared by every clip and call) and the visual
    tokens from the caller (computed once, they serve every instruction); the visual token and
    the instruction run through the LLM once per batch (:meth:`AULLM.prefill
    <au_llm.model.modeling_au_llm.AULLM.prefill>`), then one token per step
    (:meth:`~au_llm.model.modeling_au_llm.AULLM.decode_step`). Deterministic. With ``trie``,
    only tokens that continue a well-formed answer are chosen, and generation may run past
    ``max_new_tokens`` up to the trie's longest answer, so every answer is complete.

    Args:
        model: A model with an LLM, in eval mode.
        tokens: ``[B, n, H]`` visual tokens of the clips (``model.get_visual_tokens(clips)``).
        instruction: ``[L]`` the instruction's token ids (the processor's
            :meth:`~au_llm.model.processing_au_llm.AULLMProcessor.instruction_ids`).
        eos_id: The end token: an answer stops there.
        prompt_cache: From ``model.prompt_cache()`` on the current weights (None recomputes it).
        max_new_tokens: Longest answer.
        trie: Optional constraint (the processor's
            :meth:`~au_llm.model.processing_au_llm.AULLMProcessor.answer_trie`).
        stop_repeat: When > 0, a text stops as soon as it ends with a run of at least
            ``stop_repeat`` tokens twice in a row (the second copy is dropped,
            :func:`repeated_tail`): greedy decoding of a small model otherwise loops until
            ``max_new_tokens``.

    Returns:
        The answer token ids of each clip, without the end token.
    """
    with torch.no_grad():
        cache, logits = model.prefill(tokens, instruction, prompt_cache=prompt_cache)
        batch = tokens.shape[0]
        answers: list[list[int]] = [[] for _ in range(batch)]
        done = [False] * batch
        nodes = [trie.root if trie else {} for _ in range(batch)]
        steps = max(max_new_tokens, trie.longest) if trie is not None else max_new_tokens
        for _ in range(steps):
            if trie is not None:
                mask = torch.full_like(logits, float("-inf"))
                for i, node in enumerate(nodes):
                    mask[i, AnswerTrie.allowed(node) or [eos_id]] = 0.0
                logits = logits + mask
            chosen = logits.argmax(-1)
            for i, token in enumerate(chosen.tolist()):
                if done[i]:
                    continue
                if token == eos_id:
                    done[i] = True
                else:
                    answers[i].append(token)
                    period = repeated_tail(answers[i], stop_repeat) if stop_repeat else 0
                    if period:
                        del answers[i][-period:]
                        done[i] = True
                if trie is not None:
                    nodes[i] = nodes[i].get(token, {})
            if all(done):
                break
            cache, logits = model.decode_step(chosen, cache)
    return answers
