"""The straight-through estimator with gradient scaling, as a weight parametrization (SPEC 1.2, 1.3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from tuneprune.sparsity.operator import threshold_operator


@dataclass(frozen=True)
class GradientScale:
    """``m`` of one layer at one iteration: 1 where kept, theta where pruned, 0 where eliminated (SPEC 1.3)."""

    kept: torch.Tensor
    theta: float | torch.Tensor
    eliminated: torch.Tensor | None = None

    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        """``m ⊙ grad``."""
        if self.eliminated is None and isinstance(self.theta, float) and self.theta == 1.0:
            return grad
        scaled = torch.where(self.kept, grad, grad * self.theta)
        if self.eliminated is not None:
            scaled.masked_fill_(self.eliminated, 0.0)
        return scaled


class _StraightThroughThreshold(torch.autograd.Function):
    """Forward ``P_T(w)``; backward treats ``P_T`` as the identity and multiplies by ``m``."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, threshold: torch.Tensor, p: float, scale: GradientScale) -> torch.Tensor:
        ctx.scale = scale
        return threshold_operator(weight, threshold, p)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return ctx.scale(grad), None, None, None


class ThresholdedWeight(nn.Module):
    """Parametrization ``w -> P_T(w)`` with the scaled STE backward; the identity until :meth:`set`.

    The threshold and the gradient scale are computed once per iteration by the
    :class:`~tuneprune.sparsity.Sparsifier` and reused by forward and backward.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.threshold: torch.Tensor | None = None
        self.scale: GradientScale | None = None

    def set(self, threshold: torch.Tensor, scale: GradientScale) -> None:
        self.threshold, self.scale = threshold, scale

    def clear(self) -> None:
        """Nothing pruned (``S_k = 0``, SPEC 1.4): the forward pass uses ``w`` itself."""
        self.threshold = self.scale = None

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.threshold is None:
            return weight
        return _StraightThroughThreshold.apply(weight, self.threshold, self.p, self.scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"
