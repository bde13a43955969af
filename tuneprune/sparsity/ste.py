"""The straight-through estimator with gradient scaling over all prunable weights at once (formulas §1.2, §1.3).

The weights live in one flat buffer (:mod:`tuneprune.sparsity.flat`). The forward
``w~ = P_T(w)`` of every layer is one elementwise pass over that buffer, computed when
the first wrapped layer asks for its weight and handed out per layer; the backward
multiplies the layers' gradients by the per-weight scale ``m`` with one
``torch._foreach_mul``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from tuneprune.sparsity.flat import FlatLayout
from tuneprune.sparsity.operator import threshold_operator


class _FlatStraightThrough(torch.autograd.Function):
    """Forward ``P_T`` of the flat buffer as per-layer views; backward treats ``P_T`` as the identity times ``m``."""

    @staticmethod
    def forward(ctx, owner: FlatThreshold, *weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.set_materialize_grads(False)
        ctx.scales = owner.scales
        assert owner.threshold is not None  # piece() runs the operator only with a threshold set
        thresholded = threshold_operator(owner.flat, owner.threshold, owner.p)
        if owner.active is not None:
            thresholded = torch.where(owner.active, thresholded, owner.flat)
        return tuple(owner.layout.shaped(thresholded))

    @staticmethod
    def backward(ctx, *grads: torch.Tensor | None):
        if ctx.scales is None:
            return (None, *grads)
        present = [i for i, grad in enumerate(grads) if grad is not None]
        scaled = torch._foreach_mul([grad for grad in grads if grad is not None], [ctx.scales[i] for i in present])
        result: list[torch.Tensor | None] = [None] * len(grads)
        for i, grad in zip(present, scaled, strict=True):
            result[i] = grad
        return (None, *result)


class FlatThreshold:
    """``P_T`` and the gradient scale ``m`` of all prunable weights, set once per iteration.

    ``flat`` is the weight buffer of which ``weights`` are views (in ``layout``). After
    :meth:`set` the first layer that asks for its weight triggers one pass over the
    whole buffer; each layer's piece is handed out once and recomputed when its weight
    changed in place, when the grad mode differs or when it was already used (a second
    forward pass), so a piece always equals ``P_T`` of the current weights.
    """

    def __init__(self, layout: FlatLayout, flat: torch.Tensor, weights: Sequence[torch.Tensor], p: float) -> None:
        self.layout, self.flat, self.weights, self.p = layout, flat, list(weights), p
        self.threshold: torch.Tensor | None = None
        self.scales: list[torch.Tensor] | None = None
        self.active: torch.Tensor | None = None
        self._pieces: list[torch.Tensor | None] = [None] * len(self.weights)
        self._versions: list[int] = []
        self._grad_mode = False

    def set(
        self, threshold: torch.Tensor | None, scales: list[torch.Tensor] | None, active: torch.Tensor | None = None
    ) -> None:
        """T (0-dim, or one per weight of the flat buffer) and ``m`` per layer (``None``: all ones).

        ``active``, on the accelerator path, is ``S_k > 0`` as a 0-dim bool tensor: where
        it is False the forward gives ``w`` itself, as after :meth:`clear`, without the
        host reading it (``m`` must then be all ones).
        """
        self.threshold, self.scales, self.active = threshold, scales, active
        self._pieces = [None] * len(self.weights)

    def clear(self) -> None:
        """Nothing pruned (``S_k = 0``, formulas §1.4): every layer uses ``w`` itself."""
        self.set(None, None)

    def piece(self, index: int, weight: torch.Tensor) -> torch.Tensor:
        """``P_T`` of layer ``index``'s ``weight`` with the scaled STE."""
        if self.threshold is None:
            return weight
        grad_mode = torch.is_grad_enabled()
        if self._pieces[index] is None or grad_mode != self._grad_mode or weight._version != self._versions[index]:
            self._pieces = list(_FlatStraightThrough.apply(self, *self.weights))
            self._versions = [w._version for w in self.weights]
            self._grad_mode = grad_mode
        piece, self._pieces[index] = self._pieces[index], None
        assert piece is not None  # just computed when it was taken
        return piece


class ThresholdedWeight(nn.Module):
    """Parametrization ``w -> P_T(w)`` of one layer, a view into the shared :class:`FlatThreshold`."""

    def __init__(self, shared: FlatThreshold | None, index: int) -> None:
        super().__init__()
        self.shared, self.index = shared, index

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.shared is None:
            return weight
        return self.shared.piece(self.index, weight)

    def extra_repr(self) -> str:
        return f"index={self.index}"
