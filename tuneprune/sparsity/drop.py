"""Elimination of the smallest pruned weights from optimisation, "drop percentages" (formulas §4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from tuneprune.sparsity.config import DropConfig

# Tolerance of "S_k has reached S_f" for the after_target timeframe.
_REACHED = 1e-9


@dataclass(frozen=True)
class Elimination:
    """Which quantile of |w| is the elimination threshold t, and when it applies (formulas §4).

    ``global``: ``t`` is the ``rho * S_k`` quantile over the network. ``layer``: ``t_l`` is
    the ``rho * S_{l,k}`` quantile of the layer, ``S_{l,k}`` the sparsity the layer reached
    under T. Timeframe ``from_start`` or ``after_target`` (once ``S_k >= S_f``).
    """

    rho: float
    final_sparsity: float
    mode: Literal["global", "layer"] = "global"
    timeframe: Literal["from_start", "after_target"] = "from_start"

    @classmethod
    def from_config(cls, config: DropConfig, final_sparsity: float) -> Elimination:
        return cls(config.rho, final_sparsity, config.mode, config.timeframe)

    def applies(self, sparsity: float | torch.Tensor) -> bool | torch.Tensor:
        """Whether weights are eliminated at the scheduler's ``sparsity``: for a 0-dim tensor (the accelerator path)
        a 0-dim bool tensor, unread (``False`` when ``rho = 0``)."""
        if self.rho <= 0:
            return False
        started = sparsity > 0
        if self.timeframe == "from_start":
            return started
        return started & (sparsity >= self.final_sparsity - _REACHED)

    def layer_quantiles(self, kept_counts: torch.Tensor, layer_sizes: torch.Tensor) -> torch.Tensor:
        """``rho * S_{l,k}`` per layer (float64), ``S_{l,k} = 1 - kept_l / n_l`` the sparsity of layer l under T."""
        return (1.0 - kept_counts / layer_sizes).double() * self.rho
