"""The thresholding operator P_T (formulas §1.2) and the scaled straight-through estimator (formulas §1.3)."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from tuneprune.sparsity import original_weight, threshold_operator
from tuneprune.sparsity.flat import flatten_parameters
from tuneprune.sparsity.ste import FlatThreshold, ThresholdedWeight

INF = float("inf")


def reference_operator(w: torch.Tensor, T: float, p: float) -> torch.Tensor:
    """formulas §1.2 written elementwise in float64."""
    out = torch.zeros_like(w, dtype=torch.float64)
    for i, x in enumerate(w.double().flatten().tolist()):
        if abs(x) > T:
            out.view(-1)[i] = x if math.isinf(p) else math.copysign((abs(x) ** p - T**p) ** (1 / p), x)
    return out.view_as(w)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 5.5, INF])
def test_operator_matches_the_formula_on_random_draws(p):
    g = torch.Generator().manual_seed(int(p) if p != INF else 99)
    w = torch.randn(500, generator=g)
    for T in (0.1, 0.5, 1.3):
        expected = reference_operator(w, T, p).float()
        torch.testing.assert_close(threshold_operator(w, T, p), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(threshold_operator(w, torch.tensor(T), p), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("p", [20.0, 100.0])
def test_a_large_exponent_keeps_the_kept_weights(p):
    """|w|^p of weights below 1 leaves float32's range for a large p (0.05^100 = 8e-131): the kept weights must
    still be P_T(w) of formulas §1.2, not flushed to 0; hard thresholding is its limit."""
    w = torch.tensor([-0.2, -0.05, -0.03, 0.0, 0.01, 0.04, 0.06, 0.9])
    T = 0.04
    torch.testing.assert_close(threshold_operator(w, T, p), reference_operator(w, T, p).float(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(
        threshold_operator(w, torch.tensor(T), 1e4), threshold_operator(w, T, INF), rtol=1e-3, atol=0
    )


@pytest.mark.parametrize("p", [1.0, 3.0, INF])
def test_operator_gives_exact_zeros_at_and_below_threshold(p):
    w = torch.tensor([-2.0, -0.5, -0.2, 0.0, 0.2, 0.5, 0.50001, 2.0])
    out = threshold_operator(w, 0.5, p)
    assert (out[1:6] == 0).all()
    assert (out[[0, 6, 7]] != 0).all()
    assert torch.equal(torch.sign(out[[0, 6, 7]]), torch.sign(w[[0, 6, 7]]))


def test_soft_and_hard_thresholding():
    w = torch.tensor([-3.0, 1.0, 2.5])
    assert threshold_operator(w, 1.5, 1).tolist() == [-1.5, 0.0, 1.0]
    assert threshold_operator(w, 1.5, INF).tolist() == [-3.0, 0.0, 2.5]
    torch.testing.assert_close(
        threshold_operator(w, 1.5, 3), torch.tensor([-((27 - 3.375) ** (1 / 3)), 0.0, (15.625 - 3.375) ** (1 / 3)])
    )


def test_operator_rejects_exponent_below_one():
    with pytest.raises(ValueError, match="exponent p must be >= 1"):
        threshold_operator(torch.ones(2), 0.1, 0.5)


def _wrapped_linear(p: float) -> tuple[nn.Linear, FlatThreshold, torch.Tensor]:
    torch.manual_seed(0)
    layer = nn.Linear(6, 4, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.linspace(-1.2, 1.2, 24).view(4, 6)[torch.randperm(4)])
    parametrization = ThresholdedWeight(None, 0)
    parametrize.register_parametrization(layer, "weight", parametrization)
    w = original_weight(layer)
    layout, flat = flatten_parameters([w])
    parametrization.shared = FlatThreshold(layout, flat, [w], p)
    return layer, parametrization.shared, w


def _scale(kept: torch.Tensor, theta: float, eliminated: torch.Tensor | None = None) -> list[torch.Tensor]:
    """``m`` of formulas §1.3 for one layer: 1 kept, theta pruned, 0 eliminated."""
    m = torch.where(kept, 1.0, theta)
    return [m.masked_fill(eliminated, 0.0) if eliminated is not None else m]


@pytest.mark.parametrize("p", [1.0, 3.0, INF])
def test_ste_forward_uses_thresholded_weight_and_backward_scales_gradient(p):
    layer, shared, w = _wrapped_linear(p)
    T, t, theta = torch.tensor(0.6), 0.25, 0.3
    magnitude = w.detach().abs()
    kept, eliminated = magnitude > T, magnitude < t
    shared.set(T, _scale(kept, theta, eliminated))
    x = torch.randn(5, 6)

    out = layer(x)
    torch.testing.assert_close(out, F.linear(x, threshold_operator(w.detach(), T, p)))
    out.pow(2).sum().backward()

    # dL/dw~ of the same loss with w~ as a leaf
    w_tilde = threshold_operator(w.detach(), T, p).requires_grad_()
    F.linear(x, w_tilde).pow(2).sum().backward()
    upstream = w_tilde.grad
    assert upstream is not None
    assert w.grad is not None
    pruned = ~kept & ~eliminated
    assert kept.any()
    assert pruned.any()
    assert eliminated.any()
    torch.testing.assert_close(w.grad[kept], upstream[kept])
    torch.testing.assert_close(w.grad[pruned], theta * upstream[pruned])
    assert (w.grad[eliminated] == 0).all()


def test_ste_without_scale_passes_the_gradient_through():
    layer, shared, w = _wrapped_linear(3.0)
    shared.set(torch.tensor(0.5), None)
    layer(torch.ones(1, 6)).sum().backward()
    torch.testing.assert_close(w.grad, torch.ones(4, 1).expand(4, 6))


def test_a_piece_follows_the_current_weights_and_each_forward_pass():
    layer, shared, w = _wrapped_linear(3.0)
    shared.set(torch.tensor(0.5), _scale(w.detach().abs() > 0.5, 0.0))
    x = torch.ones(1, 6)
    (layer(x).sum() + layer(x).sum()).backward()  # two forward passes, two pieces, gradients add up
    kept = w.detach().abs() > 0.5
    assert w.grad is not None
    assert (w.grad[~kept] == 0).all()
    assert (w.grad[kept] == 2).all()
    with torch.no_grad():
        w.mul_(2.0)  # an in-place change: the next piece is P_T of the new weights
    torch.testing.assert_close(layer.weight, threshold_operator(w.detach(), torch.tensor(0.5), 3.0))
    with torch.no_grad():
        assert layer.weight.grad_fn is None


def test_unset_parametrization_is_the_identity():
    layer, _, w = _wrapped_linear(3.0)
    assert layer.weight is w
