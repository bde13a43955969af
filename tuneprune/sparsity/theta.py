"""Gradient scale theta of pruned weights: constant, feather and log_density policies (formulas §2)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import torch

from tuneprune.shared.config import load_numbers

if TYPE_CHECKING:
    from tuneprune.sparsity.config import ThetaConfig

ALPHA_RULE_START = 0.90
PUBLISHED_ALPHA_RULE = {"c1": 0.026, "c2": 23.09, "c3": 22.08, "c4": 0.093}
FEATHER_THETA_LIMIT = 0.95


def tangent_alpha(final_sparsity: float, c1: float, c2: float, c3: float, c4: float) -> float:
    """``alpha(S_f) = round(c1 * tan(c2 * S_f + c3) + c4, 2)`` above 0.90, 0 up to it (formulas §2), never below 0."""
    if final_sparsity <= ALPHA_RULE_START:
        return 0.0
    return max(0.0, round(c1 * math.tan(c2 * final_sparsity + c3) + c4, 2))


def alpha_for_target(final_sparsity: float) -> float:
    """The published rule ``round(0.026 * tan(23.09 * S_f + 22.08) + 0.093, 2)`` (formulas §2)."""
    return tangent_alpha(final_sparsity, **PUBLISHED_ALPHA_RULE)


def alpha_from_rule_file(path: str | Path, final_sparsity: float) -> float:
    """alpha from a fitted tangent rule: a YAML file with keys c1, c2, c3, c4 (formulas §2 fitting)."""
    return tangent_alpha(final_sparsity, **load_numbers(path, list(PUBLISHED_ALPHA_RULE), "an alpha rule"))


def derived_alpha(alpha: object) -> bool:
    """Whether a config's alpha is derived from the target by a rule (``'auto'``, ``'fitted:PATH'``, or not given,
    which is ``'auto'``) rather than given as a number (formulas §2)."""
    return alpha is None or (isinstance(alpha, str) and (alpha == "auto" or alpha.startswith("fitted:")))


def resolve_alpha(alpha: float | str, final_sparsity: float) -> float:
    """A number as given, ``'auto'`` by :func:`alpha_for_target`, ``'fitted:PATH'`` by :func:`alpha_from_rule_file`."""
    if alpha == "auto":
        return alpha_for_target(final_sparsity)
    if isinstance(alpha, str):
        return alpha_from_rule_file(alpha.removeprefix("fitted:"), final_sparsity)
    return float(alpha)


def feather_theta(final_sparsity: float) -> float:
    """Feather's rule: theta = 1 if ``S_f <= 0.95`` else 0.5 (formulas §2)."""
    return 1.0 if final_sparsity <= FEATHER_THETA_LIMIT else 0.5


def log_density_theta(densities: torch.Tensor, alpha: float, theta_min: float = 0.0) -> torch.Tensor:
    """``theta_l = clip(1 + alpha * ln(d_l), theta_min, 1)`` per layer (formulas §2; an empty layer gets theta_min)."""
    if alpha == 0:
        return torch.ones_like(densities)
    return (1.0 + alpha * torch.log(densities)).clamp(theta_min, 1.0)


class ThetaPolicy(Protocol):
    """theta of every prunable layer from its current density (formulas §2)."""

    def layer_thetas(self, densities: torch.Tensor) -> float | torch.Tensor:
        """One float for all layers, or one value per layer (a tensor on the densities' device)."""
        ...


class ConstantTheta:
    """The same theta for every layer at every iteration."""

    def __init__(self, value: float) -> None:
        self.value = value

    def layer_thetas(self, densities: torch.Tensor) -> float:
        return self.value


class FeatherTheta(ConstantTheta):
    """Feather's rule for the final sparsity ``S_f``: :func:`feather_theta` (formulas §2)."""

    def __init__(self, final_sparsity: float) -> None:
        super().__init__(feather_theta(final_sparsity))


class LogDensityTheta:
    """``theta_l = clip(1 + alpha * ln(d_l), theta_min, 1)`` per layer, or their mean for all under ``mode='global'`` (formulas §2)."""

    def __init__(self, alpha: float, theta_min: float = 0.0, mode: Literal["global", "layer"] = "global") -> None:
        self.alpha, self.theta_min, self.mode = float(alpha), theta_min, mode

    def layer_thetas(self, densities: torch.Tensor) -> torch.Tensor:
        """One theta per layer, a tensor on the densities' device (no host sync)."""
        thetas = log_density_theta(densities, self.alpha, self.theta_min)
        if self.mode == "global":
            thetas = thetas.mean().expand_as(thetas)
        return thetas


def build_theta_policy(config: ThetaConfig, final_sparsity: float) -> ThetaPolicy:
    """The policy ``config`` describes; a ``log_density`` alpha must be a number (resolved at config load)."""
    if config.policy == "constant":
        return ConstantTheta(config.value)
    if config.policy == "feather":
        return FeatherTheta(final_sparsity)
    if isinstance(config.alpha, str):
        raise ValueError(f"theta.alpha = {config.alpha!r} is resolved by SparsityConfig, pass a number here")
    return LogDensityTheta(config.alpha, config.theta_min, config.mode)
