"""One decoder call over the prompt prefix and every sample's suffix (training's LLM pass).

The prompt text before the first visual token (the prefix, ``P`` tokens) is the same for every
sample. During training LoRA changes its keys/values every step, so it cannot be cached; instead of
a batch-1 prefix call followed by a batch-``B`` suffix call, :func:`packed_decode` runs one
batch-1 sequence ``[prefix, suffix_1, ..., suffix_B]`` (``P + B * S`` tokens) with a block
attention mask: the prefix is causal, and each sample's suffix attends to the whole prefix and
causally to its own suffix, at positions ``P .. P + S - 1``. Each weight matrix is then read once
per step in the forward pass and once in the backward pass, instead of twice. The result equals
the two-call path (and the full causal LM on ``[prompt, visual]`` per sample) up to float rounding.

The mask is dense: attention over the packed sequence costs ``(P + B * S)^2`` where the two calls
cost ``P^2 + B * S * (P + S)``. One call wins while the packed sequence is short; past
:data:`PACKED_MAX_TOKENS` tokens (AU queries' suffixes, large batches) the two calls win
(:func:`worth_packing`; measured by ``bench/packed_crossover.py``).

transformers 5 passes a 4-D ``attention_mask`` to the attention layers as it is (no causal mask is
added); an additive float mask (0 where attended, the dtype's minimum elsewhere) works with both
the ``eager`` and the ``sdpa`` attention of Llama and Qwen2.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

PACKED_MAX_TOKENS = 224
"""Longest packed sequence ``P + B * S`` run as one call: near where one call stopped being faster
than two (SmolLM2-135M, 1 CPU thread, batch 32: ``bench/results/packed_crossover.json``)."""


def worth_packing(prefix_len: int, batch: int, suffix_len: int) -> bool:
    """Whether one packed call is expected to beat a prefix call followed by the suffixes.

    Args:
        prefix_len: Prompt prefix length ``P``.
        batch: Number of samples ``B``.
        suffix_len: Suffix length ``S`` per sample.
    """
    return prefix_len + batch * suffix_len <= PACKED_MAX_TOKENS


def packed_layout(
    prefix_len: int, batch: int, suffix_len: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Group and position of every token of the packed sequence.

    Args:
        prefix_len: Prompt prefix length ``P``.
        batch: Number of samples ``B``.
        suffix_len: Suffix length ``S`` per sample.
        device: Where to build the tensors.

    Returns:
        ``(groups [L], positions [L])`` with ``L = P + B * S``: group -1 for the prefix and ``b``
        for sample ``b``'s suffix; positions ``0 .. P - 1`` for the prefix and ``P .. P + S - 1``
        for every suffix.
    """
    prefix_positions = torch.arange(prefix_len, device=device)
    suffix_positions = torch.arange(prefix_len, prefix_len + suffix_len, device=device)
    positions = torch.cat([prefix_positions, suffix_positions.repeat(batch)])
    samples = torch.arange(batch, device=device).repeat_interleave(suffix_len)
    groups = torch.cat([torch.full((prefix_len,), -1, device=device), samples])
    return groups, positions


def block_attention_mask(
    prefix_len: int, batch: int, suffix_len: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Additive attention mask ``[1, 1, L, L]`` of the packed sequence (``L = P + B * S``).

    A query attends to a key when the key is in the prefix or in the query's own suffix, and the
    key's position is not after the query's.
    """
    groups, positions = packed_layout(prefix_len, batch, suffix_len, device)
    same_or_prefix = (groups[None, :] == -1) | (groups[None, :] == groups[:, None])
    allowed = same_or_prefix & (positions[None, :] <= positions[:, None])
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def packed_decode(decoder: nn.Module, prefix: Tensor, suffix: Tensor) -> Tensor:
    """Final hidden states of the packed sequence ``[prefix, suffix_1, ..., suffix_B]``.

    Args:
        decoder: A Hugging Face decoder body (``LlamaModel``, ``Qwen2Model``) taking
            ``inputs_embeds``, a 4-D ``attention_mask`` and ``position_ids``.
        prefix: ``[P, H]`` prompt-prefix embeddings shared by all samples (``P`` may be 0).
        suffix: ``[B, S, H]`` per-sample embeddings after the prefix (``S >= 1``).

    Returns:
        ``[1, P + B * S, H]`` final (post-norm) hidden states; :func:`unpack_suffix` gives each
        sample's.
    """
    batch, suffix_len, hidden = suffix.shape
    prefix_len = prefix.shape[0]
    packed = torch.cat([prefix, suffix.reshape(batch * suffix_len, hidden)]).unsqueeze(0)
    _, positions = packed_layout(prefix_len, batch, suffix_len, suffix.device)
    mask = block_attention_mask(prefix_len, batch, suffix_len, packed.dtype, suffix.device)
    outputs = decoder(
        inputs_embeds=packed,
        attention_mask=mask,
        position_ids=positions.unsqueeze(0),
        use_cache=False,
    )
    return outputs.last_hidden_state


def unpack_suffix(packed: Tensor, prefix_len: int, batch: int) -> Tensor:
    """Each sample's suffix states ``[B, S, H]`` from packed states ``[1, P + B * S, H]``.

    Works on any per-token states of the packed sequence (a layer's output as well).
    """
    return packed[0, prefix_len:].unflatten(0, (batch, -1))
