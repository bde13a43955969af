"""Figures shared by the reports: whole-number axes and a Pareto front on a plane (set-up: :mod:`tuneprune.output.plotting`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tuneprune.output.plotting import new_figure
from tuneprune.shared.pareto import Plane


def integer_x(ax: Any) -> None:
    """Whole-number ticks on the x axis (epochs, generations)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def front_figure(
    points: np.ndarray, front: Sequence[int], plane: Plane, title: str, baselines: dict[str, np.ndarray]
) -> Any:
    """Every point, the non-dominated ones joined, the dominated ones shaded, and baseline curves (``label -> n x 2``)."""
    fig, (ax,) = new_figure()
    dominated = np.setdiff1d(np.arange(len(points)), np.asarray(front, dtype=int))
    ax.scatter(
        points[dominated, 0], points[dominated, 1], color="grey", alpha=0.35, label=f"dominated ({len(dominated)})"
    )
    ax.plot(points[front, 0], points[front, 1], "o-", color="tab:blue", label=f"Pareto front ({len(front)})")
    for (label, curve), color, marker in zip(
        baselines.items(), ("tab:orange", "tab:green", "tab:purple"), "s^v", strict=False
    ):
        ax.plot(curve[:, 0], curve[:, 1], marker + "--", color=color, label=label)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(f"{plane.x} ({plane.x_direction})")
    ax.set_ylabel(f"{plane.y} ({plane.y_direction})")
    ax.legend(fontsize=8)
    return fig
