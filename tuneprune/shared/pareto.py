"""Pareto fronts and hypervolumes of points whose objectives are each maximised or minimised (pymoo NDS and HV).

One rule for every front tuneprune shows (the evolution's archive and console front, the
reports' fronts, ``fit-scheduler``'s Pareto set): a point is on the front when no other
point is at least as good in every objective and better in one. Points with exactly the
same objective values do not dominate each other, so ties are all kept, each under its
own name (a trial key, an individual), in the order they were evaluated. The points are
plain arrays with a direction per column, so the same functions serve the evolution's
(accuracy, sparsity) rows and a report's planes such as val_acc against
mean_mask_stability (formulas §3, formulas §5, formulas §8).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting


@dataclass(frozen=True)
class Plane:
    """Two metrics, ``x`` and ``y``, with their directions (``'max'`` or ``'min'``)."""

    x: str
    y: str
    x_direction: str = "max"
    y_direction: str = "max"

    @property
    def directions(self) -> tuple[str, str]:
        """``(x_direction, y_direction)``."""
        return self.x_direction, self.y_direction

    def reference(self, points: np.ndarray) -> tuple[float, float]:
        """The hypervolume reference: 0 for a maximised metric that is never negative, else its worst value."""

        def bound(column: np.ndarray, direction: str) -> float:
            worst = column.min() if direction == "max" else column.max()
            return 0.0 if direction == "max" and worst >= 0 else float(worst)

        return bound(points[:, 0], self.x_direction), bound(points[:, 1], self.y_direction)


def minimised(points: np.ndarray | Sequence[float], directions: Sequence[str]) -> np.ndarray:
    """``points`` (one column per objective, ``'max'``/``'min'`` each) as pymoo's minimised objectives."""
    return np.asarray(points, dtype=float) * np.array([-1.0 if d == "max" else 1.0 for d in directions])


def front_ranks(points: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """The front of each row of ``points`` (non-dominated sorting): 0 for the non-dominated rows, 1 for those
    non-dominated once front 0 is removed, and so on; rows with equal values share a front. Values must be finite."""
    if len(points) == 0:
        return np.zeros(0, dtype=int)
    _, ranks = NonDominatedSorting().do(minimised(points, directions), return_rank=True)
    return np.asarray(ranks, dtype=int)


def non_dominated(points: np.ndarray, directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated rows of ``points`` (front 0 of :func:`front_ranks`, found without ranking the
    others: the anytime view calls this once per trial), ties kept, in row order."""
    if len(points) == 0:
        return []
    return sorted(
        int(i) for i in NonDominatedSorting().do(minimised(points, directions), only_non_dominated_front=True)
    )


def best_of(scores: Sequence[float], keys: Sequence[str], direction: str) -> int:
    """The index of the best of ``scores`` (``'max'`` or ``'min'``); of equal scores, the one of the lowest trial key
    by its numbers (``g0-999`` before ``g0-1000``): the one tie rule of summary.json's best trial of a one-objective
    search and of the reports' best alpha per target, whatever order the trials are listed in (docs/reports.md)."""
    sign = 1.0 if direction == "max" else -1.0
    return min(range(len(scores)), key=lambda i: (-sign * scores[i], [int(n) for n in re.findall(r"\d+", keys[i])]))


def front_indices(points: np.ndarray, plane: Plane) -> list[int]:
    """Indices of the non-dominated rows of ``points`` (shape n x 2, columns x and y), by increasing x, ties in row order."""
    return sorted(non_dominated(points, plane.directions), key=lambda i: (points[i, 0], points[i, 1], i))


def hypervolume(points: np.ndarray, plane: Plane, reference: Sequence[float]) -> float:
    """The area ``points`` dominate up to ``reference`` (a point in the plane's own units)."""
    if len(points) == 0:
        return 0.0
    return float(HV(ref_point=minimised(reference, plane.directions))(minimised(points, plane.directions)))
