"""Matplotlib (Agg backend) figures shared by the reports: new figures and a Pareto front on a plane."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tuneprune.pareto import Plane


def new_figure(rows: int = 1, cols: int = 1, width: float = 6.4, height: float = 4.2) -> tuple[Any, np.ndarray]:
    """A figure of ``rows`` x ``cols`` axes (always returned as a flat array), drawn off-screen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    return fig, axes.ravel()


def integer_x(ax: Any) -> None:
    """Whole-number ticks on the x axis (epochs, generations)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def front_figure(points: np.ndarray, front: Sequence[int], plane: Plane, title: str, baselines: dict[str, np.ndarray]) -> Any:
    """Every point, the non-dominated ones joined, the dominated ones shaded, and baseline curves (``label -> n x 2``)."""
    fig, (ax,) = new_figure()
    dominated = np.setdiff1d(np.arange(len(points)), np.asarray(front, dtype=int))
    ax.scatter(points[dominated, 0], points[dominated, 1], color="grey", alpha=0.35, label=f"dominated ({len(dominated)})")
    ax.plot(points[front, 0], points[front, 1], "o-", color="tab:blue", label=f"Pareto front ({len(front)})")
    for (label, curve), color, marker in zip(baselines.items(), ("tab:orange", "tab:green", "tab:purple"), "s^v"):
        ax.plot(curve[:, 0], curve[:, 1], marker + "--", color=color, label=label)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(f"{plane.x} ({plane.x_direction})")
    ax.set_ylabel(f"{plane.y} ({plane.y_direction})")
    ax.legend(fontsize=8)
    return fig
