"""Gradient scale theta of pruned weights: constant, feather and log_density policies (SPEC 2)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from tuneprune.config import ConfigError, load_yaml
from tuneprune.sparsity.config import ThetaConfig

ALPHA_RULE_START = 0.90
PUBLISHED_ALPHA_RULE = {"c1": 0.026, "c2": 23.09, "c3": 22.08, "c4": 0.093}
FEATHER_THETA_LIMIT = 0.95


def tangent_alpha(final_sparsity: float, c1: float, c2: float, c3: float, c4: float) -> float:
    """``alpha(S_f) = round(c1 * tan(c2 * S_f + c3) + c4, 2)`` above 0.90, 0 up to it (SPEC 2), never below 0."""
    if final_sparsity <= ALPHA_RULE_START:
        return 0.0
    return max(0.0, round(c1 * math.tan(c2 * final_sparsity + c3) + c4, 2))


def alpha_for_target(final_sparsity: float) -> float:
    """The published rule ``round(0.026 * tan(23.09 * S_f + 22.08) + 0.093, 2)`` (SPEC 2)."""
    return tangent_alpha(final_sparsity, **PUBLISHED_ALPHA_RULE)


def alpha_from_rule_file(path: str | Path, final_sparsity: float) -> float:
    """alpha from a fitted tangent rule: a YAML file with keys c1, c2, c3, c4 (SPEC 2 fitting)."""
    data = load_yaml(path)
    try:
        coefficients = {key: float(data[key]) for key in PUBLISHED_ALPHA_RULE}
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}: an alpha rule needs numbers c1, c2, c3 and c4, got {data}") from None
    return tangent_alpha(final_sparsity, **coefficients)


def resolve_alpha(alpha: float | str, final_sparsity: float) -> float:
    """A number as given, ``'auto'`` by :func:`alpha_for_target`, ``'fitted:PATH'`` by :func:`alpha_from_rule_file`."""
    if alpha == "auto":
        return alpha_for_target(final_sparsity)
    if isinstance(alpha, str):
        return alpha_from_rule_file(alpha.removeprefix("fitted:"), final_sparsity)
    return float(alpha)


def feather_theta(final_sparsity: float) -> float:
    """Feather's rule: theta = 1 if ``S_f <= 0.95`` else 0.5 (SPEC 2)."""
    return 1.0 if final_sparsity <= FEATHER_THETA_LIMIT else 0.5


def log_density_theta(densities: torch.Tensor, alpha: float, theta_min: float = 0.0) -> torch.Tensor:
    """``theta_l = clip(1 + alpha * ln(d_l), theta_min, 1)`` per layer (SPEC 2; an empty layer gets theta_min)."""
    if alpha == 0:
        return torch.ones_like(densities)
    return (1.0 + alpha * torch.log(densities)).clamp(theta_min, 1.0)


class ThetaPolicy:
    """theta of every prunable layer from its current density (SPEC 2).

    ``fixed`` is the value of the constant and feather policies (the same for every
    layer at every iteration) and ``None`` for log_density.
    """

    def __init__(self, config: ThetaConfig, final_sparsity: float) -> None:
        self.config = config
        fixed = {"constant": config.value, "feather": feather_theta(final_sparsity)}
        self.fixed: float | None = fixed.get(config.policy)
        self.alpha = resolve_alpha(config.alpha, final_sparsity) if config.policy == "log_density" else 0.0

    def layer_thetas(self, densities: torch.Tensor) -> float | torch.Tensor:
        """theta of the layers: one float for a fixed policy, one per layer (a tensor, no host sync) for log_density."""
        if self.fixed is not None:
            return self.fixed
        thetas = log_density_theta(densities, self.alpha, self.config.theta_min)
        if self.config.mode == "global":
            thetas = thetas.mean().expand_as(thetas)
        return thetas
