"""alpha per target sparsity from alpha searches, and the SPEC 2 tangent rule fitted to it by least squares.

``alpha(S) = c1 * tan(c2 * S + c3) + c4`` above ``S = 0.90`` (0 up to it, SPEC 2). The fit
starts from the published constants; with fewer than four points c2 and c3 stay at the
published values (and with one point c1 too). The rule file it writes is what
``sparsity.theta.alpha: fitted:PATH`` reads (:func:`tuneprune.sparsity.alpha_from_rule_file`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tuneprune.reports.figures import new_figure
from tuneprune.sparsity.theta import ALPHA_RULE_START, PUBLISHED_ALPHA_RULE

ALPHA = "sparsity.theta.alpha"
TARGET = "sparsity.target"
CONSTANTS = tuple(PUBLISHED_ALPHA_RULE)


@dataclass(frozen=True)
class AlphaPoint:
    """The best alpha of one grid point of one search."""

    search: str
    trial: str
    group: str  # the other grid values, e.g. "model=resnet20x2"
    target: float
    alpha: float
    score: float  # the first objective of the trial


def tangent(sparsity: np.ndarray | float, c1: float, c2: float, c3: float, c4: float) -> np.ndarray:
    """The unrounded tangent family of SPEC 2."""
    return c1 * np.tan(c2 * np.asarray(sparsity, dtype=float) + c3) + c4


def best_alpha_points(summary: dict[str, Any]) -> list[AlphaPoint]:
    """Per grid point of a search that searched alpha, its best trial (of a Pareto set, the best in the first objective)."""
    (first, direction), *_ = summary["objectives"].items()
    sign = 1.0 if direction == "max" else -1.0
    chosen: dict[str, dict[str, Any]] = {}
    for entry in summary["best"]:
        grid = json.dumps(entry["grid"], sort_keys=True)
        held = chosen.get(grid)
        if ALPHA in entry["params"] and (held is None or sign * entry["values"][first] > sign * held["values"][first]):
            chosen[grid] = entry
    points = []
    for entry in chosen.values():
        group = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in entry["grid"].items() if k != TARGET)
        target = entry["config"]["sparsity"]["target"]
        points.append(AlphaPoint(summary["name"], entry["key"], group, target, entry["params"][ALPHA], entry["values"][first]))
    return sorted(points, key=lambda p: (p.group, p.target))


@dataclass
class AlphaFit:
    """Fitted constants, which of them were free, and the points they were fitted to."""

    constants: dict[str, float]
    free: tuple[str, ...]
    targets: np.ndarray
    alphas: np.ndarray

    def __call__(self, sparsity: np.ndarray | float) -> np.ndarray:
        return tangent(sparsity, **self.constants)

    @property
    def rmse(self) -> float:
        return float(np.sqrt(np.mean((self(self.targets) - self.alphas) ** 2)))

    def rule(self) -> dict[str, Any]:
        """The rule file: c1..c4 (all ``alpha_from_rule_file`` reads) and how they were found."""
        published = tangent(self.targets, **PUBLISHED_ALPHA_RULE)
        return {
            **{k: float(v) for k, v in self.constants.items()},
            "fitted": list(self.free),
            "points": len(self.targets),
            "rmse": self.rmse,
            "published_rmse": float(np.sqrt(np.mean((published - self.alphas) ** 2))),
        }

    def write_rule(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump(self.rule(), sort_keys=False))
        return path


def free_constants(n_points: int) -> tuple[str, ...]:
    """All four constants from four points on; c1 and c4 from two or three; c4 alone from one."""
    return CONSTANTS if n_points >= 4 else ("c1", "c4") if n_points >= 2 else ("c4",)


def fit_tangent(targets: Sequence[float], alphas: Sequence[float]) -> AlphaFit:
    """Least squares of the tangent family to ``(target, alpha)`` points, starting from the published constants.

    The rule only applies above S = 0.90 (SPEC 2): the caller passes the points there.
    """
    from scipy.optimize import least_squares

    s, a = np.asarray(targets, dtype=float), np.asarray(alphas, dtype=float)
    free = free_constants(len(s))

    def residuals(x: np.ndarray) -> np.ndarray:
        return tangent(s, **{**PUBLISHED_ALPHA_RULE, **dict(zip(free, x))}) - a

    result = least_squares(residuals, [PUBLISHED_ALPHA_RULE[k] for k in free], x_scale="jac")
    return AlphaFit({**PUBLISHED_ALPHA_RULE, **dict(zip(free, map(float, result.x)))}, free, s, a)


def residual_rows(points: Sequence[AlphaPoint], fit: AlphaFit) -> list[dict[str, Any]]:
    rows = []
    for p in points:
        published = float(tangent(p.target, **PUBLISHED_ALPHA_RULE))
        fitted = float(fit(p.target)) if p.target >= ALPHA_RULE_START else None
        rows.append({
            "search": p.search, "trial": p.trial, "group": p.group, "target": p.target, "alpha": p.alpha,
            "fitted": fitted, "residual": None if fitted is None else p.alpha - fitted,
            "published": published, "published_residual": p.alpha - published,
        })  # fmt: skip
    return rows


def alpha_figure(points: Sequence[AlphaPoint], fit: AlphaFit | None = None) -> Any:
    """The best alpha per target (one colour per group; hollow below 0.90), the published rule and, if given, the fitted one."""
    fig, (ax,) = new_figure()
    for group in sorted({p.group for p in points}):
        mine = [p for p in points if p.group == group and p.target >= ALPHA_RULE_START]
        ax.plot([p.target for p in mine], [p.alpha for p in mine], "o", label=f"best alpha {group}".strip())
    below = [p for p in points if p.target < ALPHA_RULE_START]
    if below:
        ax.plot([p.target for p in below], [p.alpha for p in below], "o", mfc="none", color="black", label="below 0.90 (rule is 0)")
    high = max([0.998, *(p.target for p in points)])
    s = np.linspace(ALPHA_RULE_START, high, 200)
    ax.plot(s, tangent(s, **PUBLISHED_ALPHA_RULE), "--", color="grey", label="published: " + _formula(PUBLISHED_ALPHA_RULE))
    if fit is not None:
        ax.plot(s, fit(s), "-", color="tab:red", label="fitted: " + _formula(fit.constants))
    ax.set_xlabel("target sparsity S_f")
    ax.set_ylabel("alpha")
    ax.legend(fontsize=8)
    return fig


def _formula(c: dict[str, float]) -> str:
    return f"{c['c1']:.4g} tan({c['c2']:.4g} S + {c['c3']:.4g}) + {c['c4']:.4g}"
