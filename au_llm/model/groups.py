"""Training-recipe pieces: parameter groups, the stages of a staged schedule, the answer formats.

Parameter groups: the backbone, the projector, the AU heads (with the vision head and the readout
mix) and the reader's trainable weights (the LLM's LoRA adapters or norm weights, or a control
reader's layers) each get their own learning rate (``train.lr_projector``, ``train.lr_head``,
``train.lr_lora``; 0 means ``train.lr``), so a pretrained LLM's adapters can move more slowly or
faster than the vision side.

Stages (``train.stage_epochs``, :func:`stage_plan`): ``vision`` trains the backbone, the projector
and the vision head on the vision head's loss (the reader is not run); ``heads`` the projector and
the heads, with the backbone and the reader frozen; ``all`` everything (joint training is one
``all`` stage).

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

STAGES = ("vision", "heads", "all")
"""The stages of ``train.stage_epochs``, in order."""
STAGE_GROUPS = {
    "vision": ("backbone", "projector", "vision"),
    "heads": ("projector", "head", "vision"),
    "all": ("backbone", "projector", "head", "vision", "reader"),
}
"""The parameter groups each stage trains."""


def stage_plan(cfg: TrainConfig) -> list[tuple[str, int]]:
    """``(stage, epochs)`` in order, each stage with epochs.

    The stages of ``train.stage_epochs``, or one ``all`` stage of ``train.epochs`` (joint
    training).
    """
    if not cfg.stage_epochs:
        return [("all", cfg.epochs)]
    return [(s, n) for s, n in zip(STAGES, cfg.stage_epochs, strict=True) if n > 0]


def parameter_groups(model: Any, cfg: TrainConfig, stage: str = "all") -> list[dict[str, Any]]:
    """Optimizer parameter groups with their learning rates (empty groups are left out).

    Args:
        model: An :class:`~au_llm.model.modeling_au_llm.AULLM`.
        cfg: ``lr`` and the per-group ``lr_projector``, ``lr_head``, ``lr_lora`` (0: ``lr``).
        stage: The training stage (:data:`STAGES`); ``all`` covers every trainable parameter.

    Returns:
        ``[{"name", "params", "lr"}, ...]``: ``backbone``, ``projector``, ``head`` (the AU head,
        skip head and readout mix), ``vision`` (the vision head, at ``lr_head``) and ``reader``
        (the LLM's trainable weights or a control reader's, at ``lr_lora``), as far as the stage
        trains them; for ``all`` they cover every trainable parameter once.
    """

    def trainable(*modules: nn.Module | None) -> list[nn.Parameter]:
        return [p for m in modules if m is not None for p in m.parameters() if p.requires_grad]

    named = {
        "projector": (trainable(model.projector), cfg.lr_projector),
        "head": (trainable(model.head, model.skip, model.readout_mix), cfg.lr_head),
        "vision": (trainable(model.vision_head), cfg.lr_head),
        "reader": (trainable(model.llm, model.reader), cfg.lr_lora),
    }
    taken = {id(p) for params, _ in named.values() for p in params}
    rest = [p for p in model.trainable_parameters() if id(p) not in taken]
    groups = [{"name": "backbone", "params": rest, "lr": cfg.lr}]
    groups += [
        {"name": n, "params": params, "lr": lr or cfg.lr} for n, (params, lr) in named.items()
    ]
    return [g for g in groups if g["params"] and g["name"] in STAGE_GROUPS[stage]]


def trainable_parameter_count(model: nn.Module) -> int:
    """Number of trainable values of an :class:`~au_llm.model.modeling_au_llm.AULLM`."""
    return sum(p.numel() for p in model.trainable_parameters())


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
