"""``model.head_norm``: the AU head reads its input standardised per dimension."""

from __future__ import annotations

import pytest
import torch

from au_llm.model.readout import ReadNorm
from tests.model import build_tiny, clips, one_torch_thread, tiny_model_config, tiny_spec
from tests.tolerance import assert_near


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _states(batch: int, width: int, seed: int = 0) -> torch.Tensor:
    """States with a few large, nearly constant dimensions, as a pretrained LLM's last state."""
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(batch, width, generator=generator)
    states[:, 0] = 40.0 + 0.5 * states[:, 0]
    states[:, 1] = -12.0 + 0.1 * states[:, 1]
    return states


def _conditioning(states: torch.Tensor) -> float:
    """How much standardising magnifies the input's rounding: ``max |x| / std`` over dimensions."""
    exact = states.double()
    return float((exact.abs().max(0).values / exact.std(0, unbiased=False)).max())


def test_training_standardises_each_dimension_with_the_batch_statistics() -> None:
    norm = ReadNorm(6).train()
    states = _states(16, 6)
    exact = states.double()
    mean, var = exact.mean(0), exact.var(0, unbiased=False)
    expected = (exact - mean) / torch.sqrt(var + norm.eps)
    scale = _conditioning(states)
    assert_near(norm(states), expected, terms=16, scale=scale, name="standardised")
    # The large dimensions weigh no more than the others afterwards.
    assert norm(states).std(0, unbiased=False).sub(1).abs().max() < 1e-2


def test_evaluation_and_a_batch_of_one_use_the_running_statistics() -> None:
    norm = ReadNorm(6).train()
    for seed in range(60):
        norm(_states(16, 6, seed))
    running = norm.running_mean.clone(), norm.running_var.clone()
    assert abs(float(running[0][0]) - 40.0) < 0.5, "running mean follows the batches"
    one = _states(1, 6, seed=99)
    expected = (one.double() - running[0].double()) / torch.sqrt(running[1].double() + norm.eps)
    scale = float((one.abs() / running[1].sqrt()).max())
    assert_near(norm(one), expected, terms=4, scale=scale, name="batch of one")
    assert torch.equal(norm.running_mean, running[0]), "a batch of one must not move the stats"
    norm.eval()
    batch = _states(4, 6, seed=7)
    expected = (batch.double() - running[0].double()) / torch.sqrt(running[1].double() + norm.eps)
    scale = float((batch.abs() / running[1].sqrt()).max())
    assert_near(norm(batch), expected, terms=4, scale=scale, name="evaluation")


def test_one_state_per_au_shares_the_statistics() -> None:
    norm = ReadNorm(6).train()
    states = _states(12, 6).reshape(4, 3, 6)
    flat = ReadNorm(6).train()(states.reshape(12, 6))
    torch.testing.assert_close(norm(states), flat.reshape(4, 3, 6), rtol=0, atol=0)


def test_the_head_ignores_a_per_dimension_offset_and_scale_of_what_it_reads() -> None:
    cfg = tiny_model_config()
    cfg.head_norm = True
    model = build_tiny(tiny_spec(cfg, 3), seed=0).eval()
    model.head_norm.train()
    read = _states(8, model.head.in_features)
    width = read.shape[1]
    shifted = read * torch.linspace(0.5, 3.0, width) + torch.linspace(-20, 20, width)
    with torch.no_grad():
        tokens = model.get_visual_tokens(clips(8))
        plain, moved = model.au_logits(read, tokens), model.au_logits(shifted, tokens)
    # Both are computed in float32: their difference is rounding, at most that of the shifted read.
    scale = _conditioning(shifted) * float(model.head.weight.detach().abs().sum(1).max())
    assert_near(moved, plain.double(), terms=2 * width, scale=scale, name="logits")
    without = build_tiny(tiny_spec(tiny_model_config(), 3), seed=0).eval()
    with torch.no_grad():
        change = without.au_logits(shifted, tokens) - without.au_logits(read, tokens)
    assert change.abs().max() > 1


def test_reset_trainable_forgets_the_running_statistics() -> None:
    cfg = tiny_model_config()
    cfg.head_norm = True
    model = build_tiny(tiny_spec(cfg, 3), seed=0).train()
    model(clips(4))
    assert model.head_norm.running_var.sub(1).abs().max() > 1e-3
    model.reset_trainable(seed=1)
    assert torch.equal(model.head_norm.running_mean, torch.zeros_like(model.head_norm.running_mean))
    assert torch.equal(model.head_norm.running_var, torch.ones_like(model.head_norm.running_var))
