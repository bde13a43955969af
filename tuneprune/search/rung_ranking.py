"""The early-stopping decision at one rung: Ray's ASHA for one objective, non-dominated ranking for several.

Pure NumPy, no Ray: :class:`~tuneprune.search.early_stop.AshaRule` calls :func:`stops` with
the values recorded at a rung before a trial and the trial's own (formulas §10.9).

- One objective: Ray Tune's ASHA. The trial stops when its reward (the value, negated
  when minimised) is below the ``(1 - 1/eta)`` quantile (``numpy.nanpercentile``) of the
  rewards recorded before it.
- Several objectives: the rung's points (those recorded and the trial's) are ranked by
  non-dominated sorting, then inside a front by crowding distance (larger first);
  points with a non-finite value rank last, all tied. The trial's rank is the number of
  points strictly ahead of it (never its position in a sorted order: tied points are not
  ahead of each other), and it stops when ``rank / m > 1/eta``, ``m`` the number
  recorded before it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tuneprune.pareto import front_ranks


def crowding_distances(points: np.ndarray) -> np.ndarray:
    """Crowding distance of each row of one front (formulas §10.9), by values, so equal rows tie.

    Per objective ``j`` with range ``R_j = max - min > 0``: a row at the minimum or the
    maximum gets infinity, any other ``(next larger value - next smaller value) / R_j``;
    an objective with ``R_j = 0`` adds nothing. The distance is the sum over objectives.
    """
    points = np.asarray(points, dtype=float)
    distance = np.zeros(len(points))
    for column in points.T:
        low, high = column.min(), column.max()
        if high == low:
            continue
        levels = np.unique(column)
        at = np.searchsorted(levels, column)
        inner = (at > 0) & (at < len(levels) - 1)
        gap = np.full(len(column), np.inf)
        gap[inner] = (levels[at[inner] + 1] - levels[at[inner] - 1]) / (high - low)
        distance += gap
    return distance


def rung_ranks(points: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """For each row of ``points`` (one column per objective, ``'max'``/``'min'``), how many rows are strictly ahead.

    A row is ahead of another when its front (:func:`~tuneprune.pareto.front_ranks`) is
    lower, or the front is the same and its crowding distance larger. Rows with a
    non-finite value come after every finite row and tie among themselves.
    """
    points = np.asarray(points, dtype=float).reshape(len(points), len(directions))
    finite = np.isfinite(points).all(axis=1)
    front = np.full(len(points), np.iinfo(np.int64).max, dtype=np.int64)
    crowding = np.zeros(len(points))
    front[finite] = front_ranks(points[finite], directions)
    for level in np.unique(front[finite]):
        members = np.flatnonzero(finite & (front == level))
        crowding[members] = crowding_distances(points[members])
    ahead = (front[None, :] < front[:, None]) | (
        (front[None, :] == front[:, None]) & (crowding[None, :] > crowding[:, None])
    )
    return ahead.sum(axis=1)


def stops(
    recorded: Sequence[Sequence[float]], values: Sequence[float], directions: Sequence[str], reduction_factor: float
) -> bool:
    """Whether a trial with ``values`` stops at a rung where ``recorded`` were recorded before it (module docstring)."""
    if not recorded:
        return False
    if len(directions) == 1:
        sign = 1.0 if directions[0] == "max" else -1.0
        rewards = [sign * r[0] for r in recorded]
        cutoff = np.nanpercentile(rewards, (1 - 1 / reduction_factor) * 100)
        return bool(sign * values[0] < cutoff)
    ranks = rung_ranks(np.array([*recorded, values], dtype=float), directions)
    return bool(ranks[-1] / len(recorded) > 1 / reduction_factor)
