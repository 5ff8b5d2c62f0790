"""The one rule for comparing floating-point results in the tests.

Two kernels that compute the same thing (a fast path and a straightforward one, a per-frame 2-D
convolution and the 3-D form, bfloat16 and float32) round differently, and how each rounds
depends on the CPU (AVX2, AVX512, AMX) and on the library's code path. So no test compares two
kernels exactly or with a fixed absolute tolerance: each result is compared with a float64
computation of the same thing.

- :func:`assert_near`: ``|actual - exact| <= SLACK * u * sqrt(terms) * scale`` elementwise at
  the worst element, with ``u`` the unit roundoff of the dtype ``actual`` was computed in,
  ``terms`` the length of the longest sum behind one element (a convolution's kernel volume, a
  matrix product's inner size, the positions a gradient sums over) and ``scale`` the magnitude
  (``max |exact|`` unless given). This is :func:`rounding_budget`.
- :func:`assert_as_accurate`: two paths, each against float64: the fast path's worst error is at
  most ``MULTIPLE`` times the reference path's own worst error plus the rounding budget. It
  holds wherever the fast path rounds no worse than the path it replaces, on any CPU, and fails
  when the fast path computes something else (a missing term, a wrong weight): such an error is
  orders of magnitude above both.

With ``AU_LLM_TOLERANCE_LOG=<file>`` every check appends a line (what, error, allowed) to the
file: how close each comparison comes to its limit on this CPU.

Exact equality (``torch.equal``, ``atol=0``) is kept for the same kernels run again: a resumed
run, a shard, a seed, a model saved and loaded. The rule still fails on a slip: one dropped
term of a 3000-term product, one of its 3000 weights off by 1% (``tests/test_tolerance.py``), one
of 43,200 terms of a convolution's weight gradient or one of its weights off by 0.1%
(``tests/model/test_backbones.py``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch

UNIT_ROUNDOFF = {
    torch.float64: 2.0**-53,
    torch.float32: 2.0**-24,
    torch.bfloat16: 2.0**-8,
    torch.float16: 2.0**-11,
}
"""Half the distance from 1.0 to the next representable number, per dtype."""

SLACK = 4.0
"""Rounding budget in units of ``u * sqrt(terms) * scale``. The checks of the suite stay within
a third of it on AVX2, with ATen's default kernels, with oneDNN capped at SSE4.1 or AVX, and with
MKL's compatible code path (``AU_LLM_TOLERANCE_LOG``). The differences behind the two failures of
the former fixed tolerances on an Intel AMX CPU (5.5e-5 on gradients of 4000, 1.4e-5 on gradients
of 11.5) were 0.02-0.1 budget units."""

MULTIPLE = 4.0
"""How much worse than the reference path the fast path may round."""


def rounding_budget(
    exact: torch.Tensor, *, terms: int, dtype: torch.dtype, scale: float | None = None
) -> float:
    """The largest error a ``dtype`` computation of ``exact`` may have.

    Args:
        exact: the float64 result (any shape).
        terms: the number of terms summed into one element along the longest reduction.
        dtype: the dtype the computation ran in (``torch.float32``, ``torch.bfloat16``, ...).
        scale: the magnitude errors are relative to; ``max |exact|`` when not given.

    Returns:
        ``SLACK * u(dtype) * sqrt(terms) * scale``.
    """
    if terms < 1:
        raise ValueError(f"terms must be at least 1, got {terms}")
    magnitude = float(exact.detach().abs().max()) if scale is None else scale
    return SLACK * UNIT_ROUNDOFF[dtype] * math.sqrt(terms) * magnitude


def _log(name: str, error: float, allowed: float) -> None:
    """One line per check to ``$AU_LLM_TOLERANCE_LOG`` when set (see the module docstring)."""
    path = os.environ.get("AU_LLM_TOLERANCE_LOG")
    if path:
        with open(path, "a") as log:
            log.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '?')}\t{name}\t{error:.3g}")
            log.write(f"\t{allowed:.3g}\t{error / allowed if allowed else 0.0:.3f}\n")


def max_error(actual: torch.Tensor, exact: torch.Tensor) -> float:
    """``max |actual - exact|`` computed in float64 (shapes must match)."""
    if actual.shape != exact.shape:
        raise AssertionError(f"shapes differ: {tuple(actual.shape)} vs {tuple(exact.shape)}")
    if actual.numel() == 0:
        return 0.0
    return float((actual.detach().double() - exact.detach().double()).abs().max())


def assert_near(
    actual: torch.Tensor,
    exact: torch.Tensor,
    *,
    terms: int,
    dtype: torch.dtype | None = None,
    scale: float | None = None,
    name: str = "",
) -> None:
    """``actual`` is within the rounding budget of the float64 ``exact``.

    Args:
        actual: the result to check, computed in ``dtype`` (default: its own dtype).
        exact: the same computation in float64.
        terms: see :func:`rounding_budget`.
        dtype: the dtype the computation ran in, when ``actual`` was cast afterwards.
        scale: see :func:`rounding_budget`.
        name: what is compared, for the message.
    """
    budget = rounding_budget(exact, terms=terms, dtype=dtype or actual.dtype, scale=scale)
    error = max_error(actual, exact)
    _log(name, error, budget)
    assert error <= budget, (
        f"{name or 'result'}: error {error:.3g} against float64 exceeds the rounding budget "
        f"{budget:.3g} ({terms} terms, magnitude {float(exact.detach().abs().max()):.3g})"
    )


def assert_as_accurate(
    fast: torch.Tensor,
    reference: torch.Tensor,
    exact: torch.Tensor,
    *,
    terms: int,
    scale: float | None = None,
    name: str = "",
) -> None:
    """The ``fast`` path is as close to the float64 ``exact`` as the ``reference`` path is.

    Both paths ran in ``fast``'s dtype. The fast path's worst error may be ``MULTIPLE`` times the
    reference path's plus the rounding budget (the floor for a reference that happens to be
    exact).

    Args:
        fast: the path under test.
        reference: the straightforward path it replaces.
        exact: the same computation in float64.
        terms: see :func:`rounding_budget`.
        scale: see :func:`rounding_budget`.
        name: what is compared, for the message.
    """
    fast_error, reference_error = max_error(fast, exact), max_error(reference, exact)
    budget = rounding_budget(exact, terms=terms, dtype=fast.dtype, scale=scale)
    allowed = MULTIPLE * reference_error + budget
    _log(name, fast_error, allowed)
    assert fast_error <= allowed, (
        f"{name or 'result'}: the fast path's error against float64 {fast_error:.3g} exceeds "
        f"{MULTIPLE:g} x the reference path's {reference_error:.3g} + the rounding budget "
        f"{budget:.3g} ({terms} terms, magnitude {float(exact.detach().abs().max()):.3g})"
    )


def assert_all_as_accurate(
    fast: Mapping[str, torch.Tensor],
    reference: Mapping[str, torch.Tensor],
    exact: Mapping[str, torch.Tensor],
    *,
    terms: int,
    name: str = "",
) -> None:
    """:func:`assert_as_accurate` for each tensor of one computation (the gradients of one loss).

    Every tensor is judged at one scale, the largest magnitude among them: a gradient that cancels
    to nearly zero (the LED's ``log_alpha``, 0 in exact arithmetic) carries rounding noise of the
    size of the terms that cancel, not of its own size.

    Args:
        fast: the path under test, by name.
        reference: the straightforward path, with the same names.
        exact: the float64 computation, with the same names.
        terms: see :func:`rounding_budget`.
        name: what is compared, for the message.
    """
    assert fast.keys() == reference.keys() == exact.keys(), (
        f"{name}: different tensors: {sorted(fast)} vs {sorted(reference)} vs {sorted(exact)}"
    )
    scale = max(float(value.detach().abs().max()) for value in exact.values() if value.numel())
    for key, value in fast.items():
        assert_as_accurate(
            value, reference[key], exact[key], terms=terms, scale=scale, name=f"{name}{key}"
        )


def assert_clear_choice(logits: torch.Tensor, *, terms: int, name: str = "") -> None:
    """The largest of ``logits [..., V]`` leads the runner-up by at least ten rounding budgets.

    Then no CPU's rounding can change the ``argmax``, and choices made from these logits (greedy
    tokens) may be compared exactly between two kernels: without this, a near tie would make
    the comparison depend on the CPU.

    Args:
        logits: float32 logits, the choice over the last dimension.
        terms: see :func:`rounding_budget`.
        name: what is chosen, for the message.
    """
    top = logits.detach().double().topk(2, dim=-1).values
    margin = float((top[..., 0] - top[..., 1]).min())
    budget = rounding_budget(top, terms=terms, dtype=logits.dtype)
    _log(name, 10 * budget, margin)
    assert margin >= 10 * budget, (
        f"{name or 'choice'}: the best logit leads by {margin:.3g}, within ten rounding budgets "
        f"({10 * budget:.3g}): another CPU could choose differently; change the test's data"
    )
