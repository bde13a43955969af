"""Gradient scale theta of pruned weights: constant, feather and log_density policies (formulas §2)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch

from tuneprune.shared.config import ConfigError, load_numbers, load_yaml

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


def branch_poles(c2: float, c3: float, sparsity: float) -> tuple[float, float]:
    """``(L, U)``: the poles of ``tan(c2 S + c3)`` (``c2 != 0``; a fit with c2 free may make it negative) on either
    side of ``sparsity``: where ``c2 S + c3`` reaches the next ``pi/2 + k pi`` above its value there, and one period on
    (formulas §10.3)."""
    k = math.floor((c2 * sparsity + c3 - math.pi / 2) / math.pi) + 1
    pole = (math.pi / 2 + k * math.pi - c3) / c2
    other = pole - math.pi / c2
    return min(pole, other), max(pole, other)


def rule_coverage(constants: dict[str, float], rule: dict[str, Any], final_sparsity: float) -> str | None:
    """Which targets a tangent rule covers, if not ``final_sparsity`` (None: it does): those below the upper pole of
    its branch at S = 0.90 and, for a rule ``fit-alpha`` wrote (it records ``fitted_range`` and ``pole_margin``), none
    past its fitted range plus that margin (formulas §2, §10.3). Up to 0.90 the rule is 0, covered."""
    if final_sparsity <= ALPHA_RULE_START:
        return None
    upper = branch_poles(constants["c2"], constants["c3"], ALPHA_RULE_START)[1] if constants["c2"] else math.inf
    if final_sparsity >= upper:
        return f"targets below {upper:.4g}, its upper pole"
    if "fitted_range" in rule:
        try:
            low, high = map(float, rule["fitted_range"])
            top = high + float(rule.get("pole_margin", 0.0))
        except (TypeError, ValueError):
            raise ConfigError(f"fitted_range must be two numbers, got {rule['fitted_range']!r}") from None
        if final_sparsity > top:
            return f"targets up to {top:.4g}, the range {low:.4g}..{high:.4g} it was fitted on plus its pole margin"
    return None


def alpha_from_rule_file(path: str | Path, final_sparsity: float) -> float:
    """alpha from a fitted tangent rule: a YAML file with keys c1, c2, c3, c4 (formulas §2 fitting); a target the rule
    does not cover (:func:`rule_coverage`) is a one-line :class:`ConfigError` naming it and the targets covered."""
    constants = load_numbers(path, list(PUBLISHED_ALPHA_RULE), "an alpha rule")
    if (covered := rule_coverage(constants, load_yaml(path), final_sparsity)) is not None:
        raise ConfigError(f"sparsity.target = {final_sparsity:g}: the rule {path} covers only {covered}")
    return tangent_alpha(final_sparsity, **constants)


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
