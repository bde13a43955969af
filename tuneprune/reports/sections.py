"""Report sections that searches and evolutions share: a Pareto front with its figure and hypervolume (formulas §5, §8)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tuneprune.output.plotting import new_figure
from tuneprune.reports.document import Report
from tuneprune.shared.pareto import Plane, front_indices, hypervolume


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


def front_section(
    report: Report,
    rows: Sequence[dict[str, Any]],
    plane: Plane,
    reference: Sequence[float] | None = None,
    baselines: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Plot and tabulate the front of ``rows`` on ``plane`` against ``reference`` (default :meth:`Plane.reference`):
    ``front_Y_vs_X.png``, ``..._front.csv`` and ``..._points.csv`` (every row); returns the plane's row of the
    hypervolume table."""
    name = f"front_{plane.y}_vs_{plane.x}"
    report.heading(f"Pareto front: {plane.y} ({plane.y_direction}) vs {plane.x} ({plane.x_direction})")
    summary: dict[str, Any] = {"plane": f"{plane.y} vs {plane.x}", "points": len(rows), "front": 0, "hypervolume": 0.0}
    if not rows:
        report.text("No completed point to draw.", note=True)
        return {**summary, "reference_x": None, "reference_y": None}
    points = np.array([[r[plane.x], r[plane.y]] for r in rows], dtype=float)
    front = front_indices(points, plane)
    ref = tuple(reference) if reference is not None else plane.reference(points)
    hv = hypervolume(points[front], plane, ref)
    title = f"hypervolume {hv:.4f}, reference ({plane.x}, {plane.y}) = ({ref[0]:.4g}, {ref[1]:.4g})"
    report.figure(name, front_figure(points, front, plane, title, baselines or {}))
    report.text(
        f"{len(rows)} points, {len(front)} non-dominated (pymoo NonDominatedSorting). Hypervolume (pymoo HV) "
        f"{hv:.6f} with the reference point ({plane.x} = {ref[0]:.6g}, {plane.y} = {ref[1]:.6g})."
    )
    if baselines:
        report.text("Baselines drawn for comparison: " + "; ".join(baselines) + ".")
    report.table(f"{name}_front", [rows[i] for i in front], "the non-dominated points")
    report.table(
        f"{name}_points", [{**r, "on_front": i in front} for i, r in enumerate(rows)], "every point", inline=False
    )
    return {**summary, "front": len(front), "hypervolume": hv, "reference_x": ref[0], "reference_y": ref[1]}
