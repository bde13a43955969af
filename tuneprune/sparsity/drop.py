"""Elimination of the smallest pruned weights from optimisation, "drop percentages" (formulas §4)."""

from __future__ import annotations

from typing import Literal

import torch

from tuneprune.sparsity.config import DropConfig

# Tolerance of "S_k has reached S_f" for the after_target timeframe.
_REACHED = 1e-9


class Elimination:
    """Which quantile of |w| is the elimination threshold t, and when it applies (formulas §4).

    ``global``: ``t`` is the ``rho * S_k`` quantile over the network. ``layer``: ``t_l`` is
    the ``rho * S_{l,k}`` quantile of the layer, ``S_{l,k}`` the sparsity the layer reached
    under T. Timeframe ``from_start`` or ``after_target`` (once ``S_k >= S_f``).
    """

    def __init__(
        self,
        rho: float,
        final_sparsity: float,
        mode: Literal["global", "layer"] = "global",
        timeframe: Literal["from_start", "after_target"] = "from_start",
    ) -> None:
        self.rho, self.mode, self.timeframe = rho, mode, timeframe
        self.final_sparsity = final_sparsity

    @classmethod
    def from_config(cls, config: DropConfig, final_sparsity: float) -> "Elimination":
        return cls(config.rho, final_sparsity, config.mode, config.timeframe)

    def applies(self, sparsity: float) -> bool:
        """Whether weights are eliminated at the scheduler's sparsity ``sparsity``."""
        if self.rho <= 0 or sparsity <= 0:
            return False
        return self.timeframe == "from_start" or sparsity >= self.final_sparsity - _REACHED

    def global_quantile(self, sparsity: float) -> float:
        return self.rho * sparsity

    def layer_quantiles(self, layer_sparsities: torch.Tensor) -> torch.Tensor:
        """``rho * S_{l,k}`` per layer, in float64 on the sparsities' device (no host sync)."""
        return layer_sparsities.double() * self.rho
