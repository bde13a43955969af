"""The early-stopping decision at one rung (formulas §10.9): Ray's ASHA for one objective, MOASHA for several.

Pure NumPy, no Ray: :class:`~tuneprune.search.early_stop.AshaRule` calls :func:`stops` with the values recorded at
a rung before a trial and the trial's own. One objective: the trial stops when its reward (the value, negated when
minimised) is below the ``(1 - 1/eta)`` quantile (``numpy.nanpercentile``) of the rewards recorded before it.
Several: it stops when ``rank / m > 1/eta``, its rank the number of points strictly ahead of it
(:func:`rung_ranks`), ``m`` the number recorded before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from tuneprune.shared.pareto import front_ranks, minimised


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


def epsilon_net_positions(rewards: np.ndarray) -> np.ndarray:
    """Position of each row of one front in MOASHA's greedy epsilon-net order (formulas §10.9).

    ``rewards`` has one column per objective, larger better. Each column is scaled by its
    range over the front (a column with range 0 adds nothing). The order starts at the
    best row of the first objective (ties: the best of the next objective, and so on),
    then repeatedly takes the row farthest (Euclidean) from all rows taken, ties to the
    lexicographically largest. Equal rows share the position of the first of them, so
    they tie.
    """
    distinct, row_of = np.unique(np.asarray(rewards, dtype=float), axis=0, return_inverse=True)
    spread = np.ptp(distinct, axis=0)
    scaled = np.divide(distinct, spread, out=np.zeros_like(distinct), where=spread > 0)
    position = np.empty(len(distinct), dtype=np.int64)
    taken = np.zeros(len(distinct), dtype=bool)
    nearest = np.full(len(distinct), np.inf)
    pick = len(distinct) - 1  # np.unique sorts rows lexicographically: the last is the best of the first objective
    for step in range(len(distinct)):
        position[pick], taken[pick] = step, True
        nearest = np.minimum(nearest, ((scaled - scaled[pick]) ** 2).sum(axis=1))  # squared: the same argmax
        if step + 1 < len(distinct):
            farthest = np.where(taken, -1.0, nearest)
            pick = len(distinct) - 1 - int(np.argmax(farthest[::-1]))  # ties to the lexicographically largest
    return position[row_of.reshape(-1)]


FrontOrder = Literal["crowding", "epsilon_net"]


def rung_ranks(points: np.ndarray, directions: Sequence[str], front_order: FrontOrder = "crowding") -> np.ndarray:
    """For each row of ``points`` (one column per objective, ``'max'``/``'min'``), how many rows are strictly ahead.

    A row is ahead of another when its front (:func:`~tuneprune.shared.pareto.front_ranks`) is
    lower, or the front is the same and it comes first in ``front_order``: a larger
    crowding distance, or an earlier epsilon-net position. Rows with a non-finite value
    come after every finite row and tie among themselves.
    """
    points = np.asarray(points, dtype=float).reshape(len(points), len(directions))
    finite = np.isfinite(points).all(axis=1)
    front = np.full(len(points), np.iinfo(np.int64).max, dtype=np.int64)
    preference = np.zeros(len(points))  # inside a front, larger is ahead
    front[finite] = front_ranks(points[finite], directions)
    for level in np.unique(front[finite]):
        members = np.flatnonzero(finite & (front == level))
        if front_order == "crowding":
            preference[members] = crowding_distances(points[members])
        else:
            preference[members] = -epsilon_net_positions(-minimised(points[members], directions))
    ahead = (front[None, :] < front[:, None]) | (
        (front[None, :] == front[:, None]) & (preference[None, :] > preference[:, None])
    )
    return ahead.sum(axis=1)


def stops(
    recorded: Sequence[Sequence[float]],
    values: Sequence[float],
    directions: Sequence[str],
    reduction_factor: float,
    front_order: FrontOrder = "crowding",
) -> bool:
    """Whether a trial with ``values`` stops at a rung where ``recorded`` were recorded before it (module docstring)."""
    if not recorded:
        return False
    if len(directions) == 1:
        sign = 1.0 if directions[0] == "max" else -1.0
        rewards = [sign * r[0] for r in recorded]
        cutoff = np.nanpercentile(rewards, (1 - 1 / reduction_factor) * 100)
        return bool(sign * values[0] < cutoff)
    ranks = rung_ranks(np.array([*recorded, values], dtype=float), directions, front_order)
    return bool(ranks[-1] / len(recorded) > 1 / reduction_factor)
