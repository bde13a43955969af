"""The thresholding operator P_T and its straight-through estimator with gradient scaling over all prunable weights
at once (formulas §1.2, §1.3).

The forward ``w~ = P_T(w)`` is one elementwise pass over the flat weight buffer
(:class:`FlatThreshold`), handed out per piece; the backward multiplies the pieces'
gradients by the per-weight scale ``m`` with one ``torch._foreach_mul``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn

from tuneprune.sparsity.dispatch import numpy_device, single_threaded
from tuneprune.sparsity.flat import FlatLayout
from tuneprune.sparsity.masks import Masks

# The largest p computed as (|w|^p - T^p)^(1/p): float32 holds |w|^p of every weight that matters up to it.
DIRECT_MAX_P = 3.0


def threshold_operator(w: torch.Tensor, T: torch.Tensor | float, p: float) -> torch.Tensor:
    """``P_T(w) = sign(w) * (|w|^p - T^p)^(1/p)`` where ``|w| > T``, exactly 0 elsewhere (formulas §1.2).

    ``p = 1`` is soft thresholding, ``p = 3`` Feather's default, ``p = inf`` hard
    thresholding (``w`` unchanged above ``T``). ``T`` may be a float or a 0-dim tensor on
    ``w``'s device (no host sync). Above ``p = 3``, ``|w|^p`` would leave float32's range
    (0.05^100 = 8e-131, flushed to 0): the same value is computed as
    ``|w| (1 - (T / |w|)^p)^(1/p)``, whose power is of a ratio below 1 (formulas §1.2).
    """
    if not p >= 1:
        raise ValueError(f"operator exponent p must be >= 1 or inf, got {p}")
    magnitude = w.abs()
    if math.isinf(p):
        return torch.where(magnitude > T, w, 0.0)
    if p == 1:
        shrunk = magnitude.sub_(T).clamp_(min=0.0)
    elif p <= DIRECT_MAX_P:
        shrunk = magnitude.pow_(p).sub_(T**p).clamp_(min=0.0).pow_(1.0 / p)
    else:
        ratio = (T / magnitude).pow_(p).neg_().add_(1.0).clamp_(min=0.0).pow_(1.0 / p)
        shrunk = torch.where(magnitude > T, ratio.mul_(magnitude), 0.0)
    return shrunk.copysign_(w)


def _threshold_rows(flat: torch.Tensor, threshold: torch.Tensor, p: float) -> torch.Tensor:
    """``P_T`` of ``flat``; of a ``[K, N]`` buffer on the CPU's path one row at a time, so that each member's
    elementwise loops split into vectorized body and scalar tail as they do alone (the two round ``|w|^(1/p)``
    differently)."""
    if not numpy_device(flat.device) or flat.dim() == 1 or len(flat) == 1:
        return threshold_operator(flat, threshold, p)
    return torch.stack([threshold_operator(w, t, p) for w, t in zip(flat, threshold, strict=True)])


class _FlatStraightThrough(torch.autograd.Function):
    """Forward ``P_T`` of the flat buffer (where active) as its pieces; backward treats ``P_T`` as the identity times ``m``."""

    @staticmethod
    def forward(ctx, owner: FlatThreshold, *weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.set_materialize_grads(False)
        ctx.scales = owner.scales
        assert owner.threshold is not None  # piece() runs the operator only with a threshold set
        thresholded = _threshold_rows(owner.flat, owner.threshold, owner.p)
        if owner.active is not None:
            thresholded = torch.where(owner.active, thresholded, owner.flat)
        return tuple(owner.layout.shaped(thresholded)) if owner.layout is not None else (thresholded,)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor | None):
        if ctx.scales is None:
            return (None, *grads)
        present = [(grad, scale) for grad, scale in zip(grads, ctx.scales, strict=True) if grad is not None]
        with single_threaded(ctx.scales[0].device):
            scaled = iter(torch._foreach_mul([grad for grad, _ in present], [scale for _, scale in present]))
        return (None, *(None if grad is None else next(scaled) for grad in grads))


class FlatThreshold:
    """``P_T`` and the gradient scale ``m`` of all prunable weights, set once per iteration.

    ``flat`` is the weight buffer of which ``weights`` are views: laid out by ``layout``
    (one model's layers), or, when ``layout`` is None, ``flat`` itself the one weight (a
    pack's ``[K, N]`` leaf). After :meth:`install` the first piece asked for triggers one
    pass over the whole buffer; each piece is handed out once and recomputed when its
    weight changed in place, when the grad mode differs or when it was already used (a
    second forward pass), so a piece always equals ``P_T`` of the current weights.
    """

    def __init__(
        self,
        layout: FlatLayout | None,
        flat: torch.Tensor,
        weights: Sequence[torch.Tensor],
        p: float,
        layer_thresholds: bool = False,
    ) -> None:
        self.layout, self.flat, self.weights, self.p = layout, flat, list(weights), p
        # layer thresholds (one T_l per piece of ``layout``) are spread to the weights by the per-weight layer ids,
        # made here: made inside an iteration, the copy of the layer sizes to the device would wait for it (§10.6)
        self._layer_segments = layout.segments if layer_thresholds and layout is not None else None
        self._pieces: list[torch.Tensor | None] = []
        self._versions: list[int] = []
        self._grad_mode = False
        self.set(None, None)  # no pruning until the first install

    def set(
        self, threshold: torch.Tensor | None, scales: list[torch.Tensor] | None, active: torch.Tensor | None = None
    ) -> None:
        """T (broadcasting against the buffer) and ``m`` per piece (``None``: all ones); ``threshold`` None: no pruning.

        ``active`` (``S_k > 0`` per member, a 0-dim or ``[K, 1]`` bool tensor, None: all):
        where it is False the forward gives ``w`` itself, without the host reading it
        (``m`` must then be ones there).
        """
        self.threshold, self.scales, self.active = threshold, scales, active
        self._pieces = [None] * len(self.weights)

    def install(self, masks: Masks, threshold: torch.Tensor, scales: list[torch.Tensor] | None) -> None:
        """``P_T`` at ``threshold`` (per piece with ``layer_thresholds``) and the scale ``m`` of ``masks``
        (formulas §1.2, §1.3).

        ``S_k = 0`` prunes nothing (``w`` itself, ``m = 1``, formulas §1.4): on the CPU path
        the host knows which members that is (no member: no operator at all; all: no
        selection); on the accelerator path ``S_k > 0`` stays a tensor that selects between
        the two inside the forward pass (formulas §10.6).
        """
        host_active = masks.host_active
        if host_active is not None and not any(host_active):
            self.set(None, None)
            return
        if self._layer_segments is not None:
            threshold = self._layer_segments.spread(threshold)
        self.set(threshold, scales, None if host_active is not None and all(host_active) else masks.active)

    def piece(self, index: int, weight: torch.Tensor) -> torch.Tensor:
        """``P_T`` of piece ``index``'s ``weight`` with the scaled STE."""
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
        return weight if self.shared is None else self.shared.piece(self.index, weight)

    def extra_repr(self) -> str:
        return f"index={self.index}"
