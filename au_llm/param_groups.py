"""Training pieces: parameter groups, the stages of a staged schedule, the answer formats.

Parameter groups: the backbone, the projector, the AU heads (with the vision head and the readout
mix) and the reader's trainable weights (the LLM's LoRA adapters or norm weights, or a control
reader's layers) each get their own learning rate (``train.lr_projector``, ``train.lr_head``,
``train.lr_lora``; 0 means ``train.lr``), so a pretrained LLM's adapters can move more slowly or
faster than the vision side.

Stages (``train.stage_epochs``, :func:`stage_plan`): ``vision`` trains the backbone, the projector
and the vision head on the vision head's loss (the reader is not run); ``heads`` the projector and
the heads, with the backbone and the reader frozen; ``all`` everything (joint training is one
``all`` stage).

Answer formats: with ``train.format_weights`` empty, every clip of a batch gets one format,
taken in turn; with weights, each step draws one format for the whole batch (seeded by the step,
so a resumed or repeated run draws the same), which keeps the batch's answers of equal length
and lets the informative format (``list``) take most of the steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from au_llm.model.modeling_au_llm import AULLM

STAGES = ("vision", "heads", "all")
"""The stages of ``train.stage_epochs``, in order."""
STAGE_GROUPS = {
    "vision": ("backbone", "projector", "vision"),
    "heads": ("projector", "head", "vision"),
    "all": ("backbone", "projector", "head", "vision", "reader"),
}
"""The parameter groups each stage trains."""


def stage_plan(*, epochs: int, stage_epochs: Sequence[int]) -> list[tuple[str, int]]:
    """``(stage, epochs)`` in order, each stage with epochs.

    Args:
        epochs: Training epochs (``train.epochs``).
        stage_epochs: ``train.stage_epochs``: empty, or the epochs of each of :data:`STAGES`.

    Returns:
        The stages of ``stage_epochs``, or one ``all`` stage of ``epochs`` (joint training).
    """
    if not stage_epochs:
        return [("all", epochs)]
    return [(s, n) for s, n in zip(STAGES, stage_epochs, strict=True) if n > 0]


def parameter_groups(
    model: AULLM,
    *,
    lr: float,
    lr_projector: float = 0.0,
    lr_head: float = 0.0,
    lr_lora: float = 0.0,
    stage: str = "all",
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with their learning rates (empty groups are left out).

    Args:
        model: The model.
        lr: Learning rate of the backbone and of every group whose own rate is 0
            (``train.lr``).
        lr_projector: The projector's (``train.lr_projector``; 0: ``lr``).
        lr_head: The heads' and the readout mix's (``train.lr_head``; 0: ``lr``).
        lr_lora: The reader's trainable weights' (``train.lr_lora``; 0: ``lr``).
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
        "projector": (trainable(model.projector), lr_projector),
        "head": (trainable(model.head, model.skip, model.readout_mix), lr_head),
        "vision": (trainable(model.vision_head), lr_head),
        "reader": (trainable(model.llm, model.reader), lr_lora),
    }
    taken = {id(p) for params, _ in named.values() for p in params}
    rest = [p for p in model.trainable_parameters() if id(p) not in taken]
    groups = [{"name": "backbone", "params": rest, "lr": lr}]
    groups += [{"name": n, "params": ps, "lr": own or lr} for n, (ps, own) in named.items()]
    return [g for g in groups if g["params"] and g["name"] in STAGE_GROUPS[stage]]


def trainable_parameter_count(model: AULLM) -> int:
    """Number of trainable values of the model."""
    return sum(p.numel() for p in model.trainable_parameters())


def batch_formats(
    formats: Sequence[str],
    weights: Sequence[float],
    step: int,
    n: int,
    *,
    first_only: bool = False,
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
