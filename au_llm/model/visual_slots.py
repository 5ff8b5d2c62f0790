"""Visual slots in prompt ids: the slot marker, ids split at the slots, visual tokens merged in.

The text processor (:mod:`au_llm.model.processing_au_llm`) writes :data:`VISUAL_TOKEN_ID` where a
visual token goes; the model (:mod:`au_llm.model.modeling_au_llm`) splits the ids there
(:func:`split_prompt_ids`, with a count check) and interleaves the segments' embeddings with the
visual tokens (:func:`merge_visual_tokens`): where visual tokens enter the LLM.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

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
