"""Training-recipe pieces for models with an LLM: parameter groups and the answer format per step.

Parameter groups: the backbone, the projector, the AU head(s) and the LoRA adapters each get
their own learning rate (``train.lr_projector``, ``train.lr_head``, ``train.lr_lora``; 0 means
``train.lr``), so a pretrained LLM's adapters can move more slowly or faster than the vision side.

Answer formats: with ``model.text.format_weights`` empty, every clip of a batch gets one format,
taken in turn; with weights, each step draws one format for the whole batch (seeded by the step,
so a resumed or repeated run draws the same), which keeps the batch's answers of equal length
and lets the informative format (``list``) take most of the steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from au_llm.config import TrainConfig
from au_llm.model.llm import lora_parameters


def parameter_groups(model: Any, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Optimizer parameter groups with their learning rates (empty groups are left out).

    Args:
        model: An :class:`~au_llm.model.modeling_au_llm.AULLM`.
        cfg: ``lr`` and the per-group ``lr_projector``, ``lr_head``, ``lr_lora`` (0: ``lr``).

    Returns:
        ``[{"name", "params", "lr"}, ...]`` covering every trainable parameter once.
    """
    lora: list[nn.Parameter] = list(lora_parameters(model.llm)) if model.llm is not None else []
    taken = {id(p) for p in lora}
    groups = []
    for name, lr in (
        ("projector", cfg.lr_projector),
        ("head", cfg.lr_head),
    ):
        modules = [model.projector] if name == "projector" else head_modules(model)
        params = [p for m in modules for p in m.parameters() if p.requires_grad]
        taken |= {id(p) for p in params}
        groups.append({"name": name, "params": params, "lr": lr or cfg.lr})
    groups.append({"name": "lora", "params": lora, "lr": cfg.lr_lora or cfg.lr})
    rest = [p for p in model.trainable_parameters() if id(p) not in taken]
    groups.insert(0, {"name": "backbone", "params": rest, "lr": cfg.lr})
    return [g for g in groups if g["params"]]


def head_modules(model: Any) -> list[nn.Module]:
    """The AU head and, with ``model.skip_head``, the skip head."""
    skip = getattr(model, "skip", None)
    return [model.head] + ([skip] if skip is not None else [])


def batch_formats(
    formats: Sequence[str], weights: Sequence[float], step: int, n: int, first_only: bool = False
) -> list[str]:
    """The answer format of each of the ``n`` clips of training step ``step``.

    Args:
        formats: The model's formats.
        weights: Empty: formats in turn, clip by clip, shifted every step. Otherwise one weight
            per format: one format for the whole batch, drawn with these weights.
        step: Global step counter.
        n: Clips in the batch.
        first_only: The first format for every clip (a curriculum's first phase).

    Returns:
        ``n`` format names.
    """
    if first_only:
        return [formats[0]] * n
    if not weights:
        return [formats[(step * n + i) % len(formats)] for i in range(n)]
    p = np.asarray(weights, dtype=float)
    chosen = np.random.default_rng(step).choice(len(formats), p=p / p.sum())
    return [formats[int(chosen)]] * n
