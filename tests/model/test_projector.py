from __future__ import annotations

import pytest
import torch

from au_llm.config import ProjectorConfig
from au_llm.model.projector import EnhancedFusionProjector
from tests.model import one_torch_thread
from tests.tolerance import assert_near


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def test_one_token_of_llm_width_with_paper_hidden_width() -> None:
    projector = EnhancedFusionProjector(mid_dim=40, high_dim=8, out_dim=16)
    assert projector.in_dim == 48
    assert projector.hidden == (48 + 16) // 2
    tokens = projector(torch.rand(3, 40), torch.rand(3, 8))
    assert tokens.shape == (3, 1, 16)


def test_several_tokens_relu_layer_norm() -> None:
    cfg = ProjectorConfig(hidden=24, activation="relu", layer_norm=True, dropout=0.0)
    projector = EnhancedFusionProjector(10, 6, 8, cfg, n_tokens=3)
    tokens = projector(torch.rand(2, 10), torch.rand(2, 6))
    assert tokens.shape == (2, 3, 8)
    assert projector.mlp[0].out_features == 24
    assert isinstance(projector.mlp[1], torch.nn.ReLU)
    scale = float(tokens.detach().abs().max())  # a LayerNorm's output has mean 0 up to rounding
    assert_near(tokens.mean(-1), torch.zeros(2, 3, dtype=torch.float64), terms=8, scale=scale)


def test_input_width_must_equal_mid_plus_high() -> None:
    projector = EnhancedFusionProjector(10, 6, 8)
    with pytest.raises(ValueError, match="mid \\+ high = 16.*10 \\+ 7 = 17"):
        projector(torch.rand(2, 10), torch.rand(2, 7))
