"""The anytime view of a search: each grid point's front hypervolume against the training spent so far (formulas §10.9).

Trials are taken in the order their runs ended. After each, the grid point's front is that of its completed trials so
far, its hypervolume measured against the reference of all the grid point's completed trials
(:meth:`~tuneprune.shared.pareto.Plane.reference`), so the curve only rises; the cost is the epochs all its trials
trained (those stopped early and those that failed included) and the wall time since the search's first trial started.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tuneprune.output.plotting import new_figure
from tuneprune.reports.search_figures import grid_label
from tuneprune.reports.trials import Trial
from tuneprune.shared.pareto import Plane, front_indices, hypervolume


def _ended(trial: Trial) -> float:
    assert trial.ended is not None  # only ended trials are ordered and timed
    return trial.ended


def anytime_rows(
    trials: Sequence[Trial], point: Callable[[Trial], tuple[float, float]], plane: Plane
) -> list[dict[str, Any]]:
    """One row per ended trial: grid point, trial, state, cumulative epochs and wall time (s), front hypervolume."""
    ended = sorted((t for t in trials if t.ended is not None), key=_ended)
    if not ended:
        return []
    start = min(t.started for t in ended if t.started is not None)
    rows = []
    for label in dict.fromkeys(grid_label(t.grid) for t in ended):
        mine = [t for t in ended if grid_label(t.grid) == label]
        done = np.array([point(t) for t in mine if t.complete], dtype=float).reshape(-1, 2)
        reference = plane.reference(done) if len(done) else (0.0, 0.0)
        so_far: list[tuple[float, float]] = []
        epochs = 0
        for t in mine:
            epochs += int(t.metrics.get("epoch", 0))
            if t.complete:
                so_far.append(point(t))
            points = np.array(so_far, dtype=float).reshape(-1, 2)
            hv = hypervolume(points[front_indices(points, plane)], plane, reference) if so_far else 0.0
            rows.append({
                "grid": label, "trial": t.key, "state": t.state,
                "epochs": epochs, "wall_s": _ended(t) - start, "hypervolume": hv,
            })  # fmt: skip
    return rows


def anytime_figure(rows: Sequence[dict[str, Any]], plane: Plane) -> Any:
    """Hypervolume per grid point against cumulative epochs (left) and wall time (right), as steps."""
    fig, axes = new_figure(1, 2, width=5.0, height=3.6)
    for label in dict.fromkeys(r["grid"] for r in rows):
        mine = [r for r in rows if r["grid"] == label]
        for ax, cost in zip(axes, ("epochs", "wall_s"), strict=True):
            ax.step([0] + [r[cost] for r in mine], [0.0] + [r["hypervolume"] for r in mine], where="post", label=label)
    axes[0].set_xlabel("epochs trained by the grid point's trials")
    axes[1].set_xlabel("wall time since the first trial started (s)")
    for ax in axes:
        ax.set_ylabel(f"hypervolume, {plane.y} vs {plane.x}")
    axes[0].legend(fontsize=8)
    return fig
