"""The thresholding operator P_T of Feather's forward pass (formulas §1.2)."""

from __future__ import annotations

import math

import torch


def threshold_operator(w: torch.Tensor, T: torch.Tensor | float, p: float) -> torch.Tensor:
    """``P_T(w) = sign(w) * (|w|^p - T^p)^(1/p)`` where ``|w| > T``, exactly 0 elsewhere (formulas §1.2).

    ``p = 1`` is soft thresholding, ``p = 3`` Feather's default, ``p = inf`` hard
    thresholding (``w`` unchanged above ``T``). ``T`` may be a float or a 0-dim tensor on
    ``w``'s device (no host sync).
    """
    if not p >= 1:
        raise ValueError(f"operator exponent p must be >= 1 or inf, got {p}")
    magnitude = w.abs()
    if math.isinf(p):
        return torch.where(magnitude > T, w, 0.0)
    if p == 1:
        shrunk = magnitude.sub_(T).clamp_(min=0.0)
    else:
        shrunk = magnitude.pow_(p).sub_(T**p).clamp_(min=0.0).pow_(1.0 / p)
    return shrunk.copysign_(w)
