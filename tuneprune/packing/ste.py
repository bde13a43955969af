"""The weights ``w~ = P_T(w)`` of all pack members with the scaled straight-through gradient (formulas §1.2, §1.3).

Applied once per iteration to the ``[K, N]`` matrix of prunable weights, outside the
members' forward passes, so a plain autograd function serves (no vmap rule needed).
"""

from __future__ import annotations

import torch

from tuneprune.packing.masks import PackedMasks
from tuneprune.packing.threads import single_threaded
from tuneprune.sparsity.operator import threshold_operator


class _PackedStraightThrough(torch.autograd.Function):
    """Forward ``P_T(w)`` on active rows, ``w`` elsewhere; backward ``m * grad`` on active rows.

    ``m = 1`` where kept, theta where pruned, 0 where eliminated (formulas §1.3).
    """

    @staticmethod
    def forward(ctx, weights: torch.Tensor, masks: PackedMasks, p: float) -> torch.Tensor:
        ctx.masks = masks
        return torch.where(masks.active, threshold_operator(weights, masks.thresholds, p), weights)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        masks = ctx.masks
        with single_threaded(grad.device):
            scaled = torch.where(masks.kept, grad, grad * masks.theta_per_weight)
            if masks.eliminated is not None:
                scaled.masked_fill_(masks.eliminated, 0.0)
            return torch.where(masks.active, scaled, grad), None, None


def thresholded_weights(weights: torch.Tensor, masks: PackedMasks, p: float) -> torch.Tensor:
    """``[K, N]`` weights the members compute with at this iteration."""
    return _PackedStraightThrough.apply(weights, masks, p)
