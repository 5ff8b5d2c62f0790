from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from au_llm.losses import AsymmetricLoss, build_loss, positive_weights
from tests.model import one_torch_thread
from tests.tolerance import assert_as_accurate


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_asl_matches_hand_computation() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, -4.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # positives (gamma_pos 0): -log(p)
    pos = -math.log(_sigmoid(2.0)) - math.log(_sigmoid(-4.0))
    # negatives: p_m = max(p - 0.05, 0); -p_m^4 * log(1 - p_m)
    neg = 0.0
    for x in (-1.0, 0.5):
        p_m = _sigmoid(x) - 0.05
        neg += -(p_m**4) * math.log(1 - p_m)
    loss = AsymmetricLoss(gamma_neg=4, gamma_pos=0, clip=0.05, reduction="sum")
    assert loss(logits, targets).item() == pytest.approx(pos + neg, rel=1e-6)
    mean = AsymmetricLoss(reduction="mean")(logits, targets).item()
    assert mean == pytest.approx((pos + neg) / 4, rel=1e-6)


def test_asl_ignores_easy_negatives() -> None:
    logits = torch.tensor([[-5.0]], requires_grad=True)  # p = 0.0067 < clip
    loss = AsymmetricLoss()(logits, torch.zeros(1, 1))
    loss.backward()
    assert loss.item() == 0.0
    assert logits.grad.abs().item() == 0.0


def test_bce_pos_weight_from_training_labels() -> None:
    labels = np.array([[1, 0, 1], [0, 0, 1], [0, 0, 1], [0, 1, 1]])
    weights = positive_weights(labels)
    torch.testing.assert_close(weights, torch.tensor([3.0, 3.0, 0.1]))  # 3/1, 3/1, 0/4 -> 0.1
    loss = build_loss(labels, kind="bce")
    logits = torch.randn(4, 3)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.as_tensor(labels, dtype=torch.float32), pos_weight=weights
    )
    torch.testing.assert_close(loss(logits, torch.as_tensor(labels)), expected)


def test_bce_without_positives_clamps_and_warns(caplog) -> None:
    weights = positive_weights(np.array([[0, 1], [0, 0]]))
    assert weights.tolist() == [50.0, 1.0]
    assert "no positive" in caplog.text


def test_focal_with_gamma_zero_is_bce() -> None:
    loss = build_loss(np.ones((2, 2)), kind="focal", focal_gamma=0.0)
    logits, targets = torch.randn(5, 2), torch.randint(0, 2, (5, 2)).float()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    exact = torch.nn.functional.binary_cross_entropy_with_logits(logits.double(), targets.double())
    assert_as_accurate(loss(logits, targets), expected, exact, terms=10)


def test_build_loss_checks_labels() -> None:
    with pytest.raises(ValueError, match="only 0 and 1"):
        build_loss(np.array([[0, 2]]))
    with pytest.raises(ValueError, match="\\[N, n_aus\\]"):
        build_loss(np.array([0, 1]))
