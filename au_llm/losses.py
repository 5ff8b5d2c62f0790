"""Multi-label AU losses on logits ``[B, n_aus]`` and binary targets ``[B, n_aus]``.

* ``asl``: asymmetric loss (Ridnik et al., 2021), AU-LLM's choice (gamma_neg 4, gamma_pos 0,
  clip 0.05).
* ``bce``: binary cross-entropy with a per-AU ``pos_weight = n_neg / n_pos`` from the training
  labels, clamped to [0.1, 50].
* ``focal``: sigmoid focal loss.

``reduction`` is ``mean`` (over clips and AUs) or ``sum`` (the AU-LLM reference code).

A target that is nan is an unknown label (an AU the clip's dataset does not code, see
:mod:`au_llm.data.au_sets`): it adds nothing to the loss, and ``mean`` averages over the known
targets only.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

POS_WEIGHT_RANGE = (0.1, 50.0)


def _known(targets: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
    """Targets with unknown (nan) entries set to 0, and the known mask (None when all known)."""
    unknown = torch.isnan(targets)
    if not bool(unknown.any()):
        return targets.to(dtype), None
    return torch.where(unknown, torch.zeros_like(targets), targets).to(dtype), ~unknown


def _reduce(loss: Tensor, reduction: str, known: Tensor | None = None) -> Tensor:
    """Reduce an elementwise loss ``[B, A]``; entries outside ``known`` are left out."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction = {reduction!r}: expected 'mean' or 'sum'")
    if known is None:
        return loss.mean() if reduction == "mean" else loss.sum()
    total = torch.where(known, loss, torch.zeros_like(loss)).sum()
    return total / known.sum().clamp(min=1) if reduction == "mean" else total


class AsymmetricLoss(nn.Module):
    """Asymmetric loss for multi-label classification (Ridnik et al., ICCV 2021).

    With ``p = sigmoid(x)`` and the shifted negative probability ``p_m = max(p - clip, 0)``:
    ``loss = -[y (1 - p)^gamma_pos log(p) + (1 - y) p_m^gamma_neg log(1 - p_m)]``.
    The focusing weights ``(1 - p)^gamma_pos`` and ``p_m^gamma_neg`` are treated as constants in
    the gradient when ``detach_focal_weight`` (ASL's ``disable_torch_grad_focal_loss``, also what
    the AU-LLM reference code does).

    Args:
        gamma_neg: Focusing parameter of negatives.
        gamma_pos: Focusing parameter of positives.
        clip: Probability margin that discards easy negatives (0 disables it).
        reduction: ``mean`` or ``sum``.
        detach_focal_weight: Stop gradients through the focusing weights.
    """

    def __init__(
        self,
        gamma_neg: float = 4.0,
        gamma_pos: float = 0.0,
        clip: float = 0.05,
        reduction: str = "mean",
        *,
        detach_focal_weight: bool = True,
    ) -> None:
        super().__init__()
        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip
        self.reduction = reduction
        self.detach_focal_weight = detach_focal_weight

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Return the reduced loss of logits ``[B, A]`` against 0/1 targets ``[B, A]``."""
        targets, known = _known(targets, logits.dtype)
        prob = torch.sigmoid(logits)
        if self.clip > 0:
            prob_neg = (prob - self.clip).clamp(min=0)
            log_not_neg = torch.log((1 - prob_neg).clamp(min=1e-8))
        else:
            prob_neg = prob
            log_not_neg = F.logsigmoid(-logits)
        weight_pos = (1 - prob) ** self.gamma_pos
        weight_neg = prob_neg**self.gamma_neg
        if self.detach_focal_weight:
            weight_pos, weight_neg = weight_pos.detach(), weight_neg.detach()
        loss = -(
            targets * weight_pos * F.logsigmoid(logits) + (1 - targets) * weight_neg * log_not_neg
        )
        return _reduce(loss, self.reduction, known)


class FocalLoss(nn.Module):
    """Sigmoid focal loss (Lin et al., 2017): ``(1 - p_t)^gamma * BCE``.

    Args:
        gamma: Focusing parameter.
        reduction: ``mean`` or ``sum``.
    """

    def __init__(self, gamma: float = 2.0, reduction: str = "mean") -> None:
        super().__init__()
        self.gamma = gamma
        self.reduction = reduction

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Return the reduced loss of logits ``[B, A]`` against 0/1 targets ``[B, A]``."""
        targets, known = _known(targets, logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p_t = torch.exp(-bce)
        return _reduce((1 - p_t) ** self.gamma * bce, self.reduction, known)


class WeightedBCELoss(nn.Module):
    """Binary cross-entropy on logits with a per-AU positive-class weight.

    Args:
        pos_weight: ``[n_aus]`` weights of the positive term (see :func:`positive_weights`).
        reduction: ``mean`` or ``sum``.
    """

    def __init__(self, pos_weight: Tensor, reduction: str = "mean") -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight.float())
        self.reduction = reduction

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Return the reduced loss of logits ``[B, A]`` against 0/1 targets ``[B, A]``."""
        targets, known = _known(targets, logits.dtype)
        loss = F.binary_cross_entropy_with_logits(
            logits, targets, pos_weight=self.pos_weight, reduction="none"
        )
        return _reduce(loss, self.reduction, known)


def positive_weights(labels: np.ndarray | Tensor) -> Tensor:
    """Per-AU ``n_neg / n_pos`` from training labels, clamped to :data:`POS_WEIGHT_RANGE`.

    Args:
        labels: ``[N, n_aus]`` 0/1 training labels (nan: unknown, not counted).

    Returns:
        ``[n_aus]`` float32 weights (AUs without positives get the upper bound, with a warning).
    """
    y = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
    known = ~torch.isnan(y)
    n_pos = torch.where(known, y, torch.zeros_like(y)).sum(dim=0)
    n_neg = known.sum(dim=0) - n_pos
    for index in torch.nonzero(n_pos == 0).flatten().tolist():
        logger.warning("AU column %d has no positive training label; pos_weight is clamped", index)
    weights = n_neg / n_pos.clamp(min=1e-6)
    return weights.clamp(*POS_WEIGHT_RANGE)


def _check_labels(labels: np.ndarray | Tensor) -> None:
    array = np.asarray(labels)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"training labels: expected [N, n_aus] with N > 0, got {array.shape}")
    if not (np.isin(array, (0, 1)) | np.isnan(array.astype(float))).all():
        raise ValueError("training labels: expected only 0 and 1 values (nan: unknown)")


def build_loss(
    labels: np.ndarray | Tensor,
    *,
    kind: str = "asl",
    reduction: str = "mean",
    asl_gamma_neg: float = 4.0,
    asl_gamma_pos: float = 0.0,
    asl_clip: float = 0.05,
    focal_gamma: float = 2.0,
) -> nn.Module:
    """Build an AU loss; ``labels`` (``[N, n_aus]``, 0/1) give BCE's ``pos_weight``.

    The defaults are AU-LLM's (``train``'s defaults).

    Args:
        labels: Training labels of the fold, ``[N, n_aus]``.
        kind: ``asl``, ``bce`` or ``focal`` (``train.loss``).
        reduction: ``mean`` or ``sum`` (``train.loss_reduction``).
        asl_gamma_neg: ASL focusing parameter of negatives (``train.asl_gamma_neg``).
        asl_gamma_pos: ASL focusing parameter of positives (``train.asl_gamma_pos``).
        asl_clip: ASL probability margin of negatives (``train.asl_clip``).
        focal_gamma: Focal loss gamma (``train.focal_gamma``).

    Returns:
        A module mapping ``(logits [B, n_aus], targets [B, n_aus])`` to a scalar loss.
    """
    if isinstance(labels, Tensor):
        labels = labels.detach().cpu().numpy()
    _check_labels(labels)
    if kind == "asl":
        return AsymmetricLoss(
            gamma_neg=asl_gamma_neg, gamma_pos=asl_gamma_pos, clip=asl_clip, reduction=reduction
        )
    if kind == "bce":
        return WeightedBCELoss(positive_weights(labels), reduction=reduction)
    if kind == "focal":
        return FocalLoss(gamma=focal_gamma, reduction=reduction)
    raise ValueError(f"train.loss = {kind!r}: expected asl, bce or focal")
