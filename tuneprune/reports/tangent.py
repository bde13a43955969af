"""The formulas §2 tangent family ``alpha(S) = c1 tan(c2 S + c3) + c4`` fitted by least squares without a pole in range.

``tan`` has a pole wherever ``c2 S + c3 = pi/2 + k pi``. An unconstrained fit to a few noisy points can put one
between the fitted targets (a rule that jumps from +0.57 to -0.25 within 0.001 of sparsity). The fit therefore works
with the branch of ``tan`` the rule uses, described by its two poles ``L < U``: ``c2 = pi / (U - L)`` and
``c3 = pi/2 - c2 U`` (modulo pi, shown nearest the published ``c3``). Least squares over ``(c1, L, U, c4)`` with the
bounds ``L <= 0.90 - margin`` and ``U >= max target + margin`` (scipy's ``least_squares``, trust-region reflective)
keeps both poles outside the range where the rule applies, from ``S = 0.90`` (formulas §2: below it alpha is 0) to the
highest fitted target, with ``margin`` to spare. The published rule's branch is ``L = 0.8805, U = 1.0166``.

With fewer distinct targets than four, fewer constants are free: c1 and c4 from two or three, c4 alone from one; the
others keep the published values, whose poles (0.8805, 1.0166) lie outside any range of targets from 0.90 up. Any
other subset is fitted unbounded and refused if a pole lands in range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tuneprune.shared.config import ConfigError
from tuneprune.sparsity.theta import ALPHA_RULE_START, PUBLISHED_ALPHA_RULE, branch_poles

CONSTANTS = tuple(PUBLISHED_ALPHA_RULE)
DEFAULT_POLE_MARGIN = 0.005


def tangent(sparsity: np.ndarray | float, c1: float, c2: float, c3: float, c4: float) -> np.ndarray:
    """The unrounded tangent family of formulas §2."""
    return c1 * np.tan(c2 * np.asarray(sparsity, dtype=float) + c3) + c4


def constants_from_poles(c1: float, lower: float, upper: float, c4: float) -> dict[str, float]:
    """c1..c4 of the branch between the poles ``lower < upper``, c3 taken nearest the published value."""
    c2 = math.pi / (upper - lower)
    c3 = math.pi / 2 - c2 * upper
    c3 += math.pi * round((PUBLISHED_ALPHA_RULE["c3"] - c3) / math.pi)
    return {"c1": c1, "c2": c2, "c3": c3, "c4": c4}


def fit_options(free: Sequence[str] | None, pole_margin: float) -> tuple[str, ...] | None:
    """``free`` (None: chosen by the number of targets) as names of c1..c4 in that order, once each; checked with
    ``pole_margin`` in [0, 0.1) for :func:`fit_tangent` and ``fit-alpha --constants/--pole-margin`` alike: a one-line
    :class:`ConfigError` naming the option otherwise."""
    if free is not None and not (free and set(free) <= set(CONSTANTS)):
        raise ConfigError(f"--constants = {','.join(free)!r}: 'auto' or a comma list of {', '.join(CONSTANTS)}")
    if not 0.0 <= pole_margin < 0.1:
        raise ConfigError(f"--pole-margin = {pole_margin}: must lie in [0, 0.1)")
    return None if free is None else tuple(name for name in CONSTANTS if name in free)


@dataclass
class AlphaFit:
    """Fitted constants, which were free, the points and the pole margin they were fitted with."""

    constants: dict[str, float]
    free: tuple[str, ...]
    targets: np.ndarray
    alphas: np.ndarray
    pole_margin: float

    def __call__(self, sparsity: np.ndarray | float) -> np.ndarray:
        return tangent(sparsity, **self.constants)

    @property
    def residuals(self) -> np.ndarray:
        """Observed minus fitted alpha, per point."""
        return self.alphas - self(self.targets)

    @property
    def rmse(self) -> float:
        return float(np.sqrt(np.mean(self.residuals**2)))

    @property
    def r2(self) -> float | None:
        """``1 - SS_res / SS_tot``; undefined (None) when every alpha is the same."""
        total = float(np.sum((self.alphas - self.alphas.mean()) ** 2))
        return None if total == 0.0 else 1.0 - float(np.sum(self.residuals**2)) / total

    @property
    def fitted_range(self) -> tuple[float, float]:
        """Where the rule must stay finite: from S = 0.90 to the highest fitted target."""
        return ALPHA_RULE_START, float(self.targets.max())

    @property
    def poles(self) -> tuple[float, float]:
        return branch_poles(self.constants["c2"], self.constants["c3"], float(self.targets.max()))

    @property
    def pole_gaps(self) -> dict[str, float]:
        """How far the ``lower`` and the ``upper`` pole lie outside the fitted range and its margin (< 0: inside)."""
        (low, high), (lower, upper) = self.fitted_range, self.poles
        return {"lower": low - self.pole_margin - lower, "upper": upper - high - self.pole_margin}

    @property
    def poles_on_bounds(self) -> list[str]:
        """``lower``/``upper`` for a pole the bounds hold back: the points alone would pull it into the range."""
        return [name for name, gap in self.pole_gaps.items() if abs(gap) < 1e-6]

    def rule(self) -> dict[str, Any]:
        """The rule file: c1..c4 (all ``alpha_from_rule_file`` reads) and how they were found."""
        return {
            **{k: float(v) for k, v in self.constants.items()},
            "fitted": list(self.free),
            "points": len(self.targets),
            "rmse": self.rmse,
            "r2": self.r2,
            "residuals": [float(r) for r in self.residuals],
            "poles": [float(p) for p in self.poles],
            "poles_on_bounds": self.poles_on_bounds,
            "fitted_range": list(self.fitted_range),
            "pole_margin": self.pole_margin,
            "published_rmse": replace(self, constants=PUBLISHED_ALPHA_RULE).rmse,
        }


def fit_tangent(
    targets: Sequence[float] | np.ndarray,
    alphas: Sequence[float] | np.ndarray,
    free: Sequence[str] | None = None,
    pole_margin: float = DEFAULT_POLE_MARGIN,
) -> AlphaFit:
    """Least squares of the tangent family to ``(target, alpha)`` points (targets >= 0.90), poles out of range.
    ``free`` defaults to what the number of distinct targets allows (module docstring); names other than c1..c4, a
    ``pole_margin`` outside [0, 0.1) (:func:`fit_options`) or more constants than distinct targets are refused
    (:class:`ConfigError`)."""
    from scipy.optimize import least_squares

    s, a = np.asarray(targets, dtype=float), np.asarray(alphas, dtype=float)
    distinct = len(np.unique(s))
    free = fit_options(free, pole_margin) or (
        CONSTANTS if distinct >= 4 else ("c1", "c4") if distinct >= 2 else ("c4",)
    )
    if distinct < len(free):
        raise ConfigError(
            f"fit-alpha: {distinct} usable distinct targets for {len(free)} constants ({', '.join(free)})"
        )
    if set(free) != set(CONSTANTS):

        def with_free(x: np.ndarray) -> dict[str, float]:
            return {**PUBLISHED_ALPHA_RULE, **dict(zip(free, map(float, x), strict=True))}

        result = least_squares(
            lambda x: tangent(s, **with_free(x)) - a, [PUBLISHED_ALPHA_RULE[k] for k in free], x_scale="jac"
        )
        fit = AlphaFit(with_free(result.x), free, s, a, pole_margin)
    else:
        lower_bound, upper_bound = ALPHA_RULE_START - pole_margin, float(s.max()) + pole_margin
        c1, c2, c3, c4 = (PUBLISHED_ALPHA_RULE[k] for k in CONSTANTS)
        lower, upper = branch_poles(c2, c3, ALPHA_RULE_START)  # the published branch's poles
        start = [c1, min(lower, lower_bound - 1e-3), max(upper, upper_bound + 1e-3), c4]
        bounds = ([-np.inf, -np.inf, upper_bound, -np.inf], [np.inf, lower_bound, np.inf, np.inf])
        result = least_squares(
            lambda x: tangent(s, **constants_from_poles(*x)) - a, start, bounds=bounds, x_scale="jac"
        )
        fit = AlphaFit(constants_from_poles(*map(float, result.x)), CONSTANTS, s, a, pole_margin)
    if min(fit.pole_gaps.values()) < -1e-9:
        (low, high), (lower, upper) = fit.fitted_range, fit.poles
        if {"c2", "c3"}.isdisjoint(fit.free):  # the published poles: only a smaller margin keeps them out
            allowed = math.floor((fit.pole_margin + min(fit.pole_gaps.values())) * 1e4) / 1e4
            raise ConfigError(
                f"--pole-margin = {fit.pole_margin}: with c2 and c3 published ({', '.join(fit.free)} fitted) its poles "
                f"{lower:.4f} and {upper:.4f} lie within it of the range {low}..{high}; allowed: [0, {allowed:.4f}]"
            )
        raise ConfigError(
            f"fit-alpha: with {', '.join(fit.free)} free the rule has a pole ({lower:.4f} or {upper:.4f}) within "
            f"{fit.pole_margin} of the range {low}..{high}; fit all four constants, whose fit keeps the poles out"
        )
    return fit
