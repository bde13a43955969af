"""The thresholding operator P_T of Feather's forward pass (formulas §1.2)."""

from __future__ import annotations

import math

import torch

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
