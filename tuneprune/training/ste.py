"""The weights ``w~ = P_T(w)`` of all pack members with the scaled straight-through gradient (formulas §1.2, §1.3).

Applied once per iteration to the ``[K, N]`` matrix of prunable weights, outside the
members' forward passes, so a plain autograd function serves (no vmap rule needed). The
thresholds, the active rows and the gradient scale ``m`` are the engine's
(:class:`~tuneprune.sparsity.members.MemberSparsity`), as for one model.
"""

from __future__ import annotations

import torch

from tuneprune.sparsity.masks import Masks
from tuneprune.sparsity.operator import threshold_operator
from tuneprune.training.threads import single_threaded


def _threshold_rows(weights: torch.Tensor, thresholds: torch.Tensor, p: float) -> torch.Tensor:
    """``P_T`` of every row; on the CPU one row at a time, so that each member's elementwise loops split
    into vectorized body and scalar tail as they do alone (the two round ``|w|^(1/p)`` differently)."""
    if weights.device.type != "cpu" or len(weights) == 1:
        return threshold_operator(weights, thresholds, p)
    return torch.stack([threshold_operator(w, t, p) for w, t in zip(weights, thresholds, strict=True)])


class _PackedStraightThrough(torch.autograd.Function):
    """Forward ``P_T(w)`` on active rows, ``w`` elsewhere; backward ``m * grad``."""

    @staticmethod
    def forward(
        ctx, weights: torch.Tensor, masks: Masks, thresholds: torch.Tensor, scale: torch.Tensor | None, p: float
    ) -> torch.Tensor:
        ctx.scale = scale
        thresholded = _threshold_rows(weights, thresholds, p)
        if masks.host_active is not None and all(masks.host_active):
            return thresholded
        return torch.where(masks.active, thresholded, weights)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if ctx.scale is None:
            return grad, None, None, None, None
        with single_threaded(grad.device):
            return grad * ctx.scale, None, None, None, None


def thresholded_weights(
    weights: torch.Tensor, masks: Masks, thresholds: torch.Tensor, scale: torch.Tensor | None, p: float
) -> torch.Tensor:
    """``[K, N]`` weights the members compute with at this iteration.

    ``thresholds`` is T per weight (``[K, N]`` or ``[K, 1]``), ``scale`` ``m`` (None when all ones).
    """
    if masks.host_active is not None and not any(masks.host_active):
        return weights
    return _PackedStraightThrough.apply(weights, masks, thresholds, scale, p)
