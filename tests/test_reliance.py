import numpy as np
import pytest
import torch

from au_llm.model.checkpoint import build_model
from au_llm.reliance import other_clips, summarise_logliks, token_reliance
from tests.model import one_torch_thread, tiny_model_config, tiny_spec


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _model():
    cfg = tiny_model_config()
    cfg.head = "both"
    cfg.text.formats = ["list", "yesno"]
    model, processor = build_model(tiny_spec(cfg, 3), seed=0)
    return model.eval(), processor


def _labels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, size=(n, 3)).astype(float)


def _answer_code(ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """A number per row that differs between different answers (the target ids' sum)."""
    return torch.where(targets == -100, 0, targets).sum(1).float()


def test_text_that_ignores_the_token_prefers_its_own_half_the_time():
    (model, processor), labels = _model(), _labels(12)
    tokens = torch.randn(12, 1, model.llm.config.hidden_size)

    def ignores(tokens, ids, targets):  # depends on the answer only, never on the token
        return -0.01 * _answer_code(ids, targets)

    result = token_reliance(model, processor, tokens, labels, ["list", "yesno"], loglik=ignores)
    for fmt in ("list", "yesno"):
        assert result[fmt]["own_vs_other"] == pytest.approx(0.5)
        assert result[fmt]["own_vs_zero"] == pytest.approx(0.5)
        assert result[fmt]["margin_other"] == pytest.approx(0.0, abs=1e-6)


def test_text_that_copies_the_token_always_prefers_its_own():
    (model, processor), labels = _model(), _labels(12)
    hidden = model.llm.config.hidden_size
    # Each clip's token carries its labels; the "text" is likely when the token matches them.
    tokens = torch.zeros(12, 1, hidden)
    tokens[:, 0, :3] = torch.as_tensor(labels, dtype=torch.float32) * 2 - 1
    code_of = {}
    _, targets = processor.answer_batch(torch.as_tensor(labels), ["list"] * 12)
    for row, code in zip(labels, _answer_code(targets, targets), strict=True):
        code_of[float(code)] = row * 2 - 1

    def copies(tokens, ids, targets):
        wanted = torch.as_tensor(
            np.stack([code_of[float(c)] for c in _answer_code(ids, targets)]), dtype=torch.float32
        )
        return -((tokens[:, 0, :3] - wanted) ** 2).sum(1)

    result = token_reliance(model, processor, tokens, labels, ["list"], loglik=copies)["list"]
    assert result["own_vs_other"] == 1.0
    assert result["own_vs_zero"] == 1.0
    assert result["margin_other"] > 1.0
    assert result["n_pairs"] == 12 * 3


def test_the_real_loglik_of_a_tiny_model_runs_and_counts_every_clip():
    (model, processor), labels = _model(), _labels(6, seed=1)
    with torch.no_grad():
        tokens = torch.randn(6, 1, model.llm.config.hidden_size)
        result = token_reliance(model, processor, tokens, labels, ["list"])["list"]
    assert result["n_clips"] == 6
    assert 0.0 <= result["own_vs_other"] <= 1.0
    assert np.isfinite(result["margin_zero"])


def test_other_clips_are_those_with_another_answer():
    labels = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    chosen = other_clips(labels, 2)
    assert chosen.tolist() == [[2, 3], [2, 3], [3, 0], [0, 1]]
    same = other_clips(np.ones((3, 2)), 2)
    assert (same == -1).all()


def test_ties_count_half_and_missing_others_are_skipped():
    own = np.array([-1.0, -2.0, -3.0])
    other = np.array([[-1.0, -5.0], [-1.0, np.nan], [np.nan, np.nan]])
    result = summarise_logliks(own, other, zero=own - 1)
    assert result["n_pairs"] == 3
    assert result["own_vs_other"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert result["margin_other"] == pytest.approx(((-1 + 3) + (-2 + 1)) / 2)
    assert result["own_vs_zero"] == 1.0 and result["margin_zero"] == pytest.approx(1.0)
