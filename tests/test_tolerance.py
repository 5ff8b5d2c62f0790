"""The tests' float comparison rule (tests/tolerance.py) passes rounding and fails real slips."""

from __future__ import annotations

import pytest
import torch

from tests.tolerance import (
    SLACK,
    assert_all_as_accurate,
    assert_as_accurate,
    assert_clear_choice,
    assert_near,
    rounding_budget,
)


def _operands(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(40, 3000, generator=generator), torch.randn(3000, 30, generator=generator)


def test_the_budget_grows_with_unit_roundoff_terms_and_magnitude() -> None:
    exact = torch.tensor([-8.0, 2.0], dtype=torch.float64)
    assert rounding_budget(exact, terms=1, dtype=torch.float32) == SLACK * 2.0**-24 * 8.0
    assert rounding_budget(exact, terms=100, dtype=torch.float32) == SLACK * 2.0**-24 * 80.0
    assert rounding_budget(exact, terms=1, dtype=torch.bfloat16) == SLACK * 2.0**-8 * 8.0
    assert rounding_budget(exact, terms=4, dtype=torch.float32, scale=1.0) == SLACK * 2.0**-23
    with pytest.raises(ValueError, match="terms must be at least 1"):
        rounding_budget(exact, terms=0, dtype=torch.float32)


def test_a_float32_product_is_near_float64_and_a_dropped_term_is_not() -> None:
    a, b = _operands()
    exact = a.double() @ b.double()
    assert_near(a @ b, exact, terms=3000)
    assert_near((a @ b).bfloat16(), exact, terms=1, dtype=torch.bfloat16)
    slipped = a.clone()
    slipped[7, 1234] = 0.0  # one of 3000 terms of 30 results left out
    with pytest.raises(AssertionError, match="exceeds the rounding budget"):
        assert_near(slipped @ b, exact, terms=3000)


def test_a_reordered_product_is_as_accurate_and_a_changed_weight_is_not() -> None:
    a, b = _operands(1)
    exact = a.double() @ b.double()
    reference = a @ b
    assert_as_accurate((b.T @ a.T).T, reference, exact, terms=3000)  # another kernel's order
    assert_as_accurate(reference, reference, exact, terms=3000)
    b_slip = b.clone()
    b_slip[100, 3] *= 1.01  # one of 3000 weights off by 1%
    with pytest.raises(AssertionError, match="fast path's error"):
        assert_as_accurate(a @ b_slip, reference, exact, terms=3000)
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_as_accurate(reference[:-1], reference, exact, terms=3000)


def test_tensors_of_one_computation_share_the_largest_scale() -> None:
    exact = {"big": torch.tensor([100.0], dtype=torch.float64), "zero": torch.zeros(1).double()}
    reference = {"big": torch.tensor([100.0]), "zero": torch.tensor([0.0])}
    noisy = {"big": torch.tensor([100.0]), "zero": torch.tensor([1e-6])}  # cancellation noise
    assert_all_as_accurate(noisy, reference, exact, terms=100)
    wrong = {"big": torch.tensor([100.0]), "zero": torch.tensor([1e-2])}
    with pytest.raises(AssertionError, match="zero"):
        assert_all_as_accurate(wrong, reference, exact, terms=100)
    with pytest.raises(AssertionError, match="different tensors"):
        assert_all_as_accurate({"big": noisy["big"]}, reference, exact, terms=100)


def test_a_near_tie_is_not_a_clear_choice() -> None:
    assert_clear_choice(torch.tensor([[1.0, 3.0, 2.5]]), terms=100)
    with pytest.raises(AssertionError, match="within ten rounding budgets"):
        assert_clear_choice(torch.tensor([[1.0, 3.0, 3.0 - 1e-6]]), terms=100)
