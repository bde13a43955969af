"""CSV and plots of pruning curves (formulas §6): accuracy and loss against the pruned percentage.

``curves.csv`` has one row per (ranking, percentage). ``rankings.png`` draws the fixed
rankings (relevance, parameter, random, combined), ``deltas.png`` the delta-mixed ones;
each has an accuracy and a loss panel and the unpruned model as a dashed line.
"""

from __future__ import annotations

from pathlib import Path

from tuneprune.output.plotting import new_figure, pyplot, save_figure
from tuneprune.output.summaries import write_rows
from tuneprune.relevance.rankings import describe
from tuneprune.relevance.study import Row, StudyResult

PANELS = (("acc", "test accuracy"), ("loss", "test loss"))


def plot_curves(
    curves: dict[str, list[Row]], baseline: dict[str, float], title: str, path: Path, colormap: str | None = None
) -> Path:
    """One line per curve in an accuracy panel and a loss panel, saved as a PNG.

    ``colormap`` (e.g. ``viridis``) colours the curves in order along a sequential map,
    for an ordered family such as the deltas; the default is matplotlib's colour cycle.
    """
    cmap = pyplot().get_cmap(colormap) if colormap else None
    fig, axes = new_figure(1, len(PANELS), width=11 / len(PANELS), height=4.2)
    for ax, (key, label) in zip(axes, PANELS, strict=True):
        for i, (name, curve) in enumerate(curves.items()):
            color = cmap(i / max(len(curves) - 1, 1)) if cmap else None
            x, y = [r["percentage"] for r in curve], [r[key] for r in curve]
            ax.plot(x, y, marker="o", markersize=3, label=name, color=color)
        ax.axhline(baseline[key], color="grey", linestyle="--", linewidth=1, label="unpruned")
        ax.set_xlabel("convolution channels pruned (%)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def write_report(result: StudyResult, directory: Path, title: str) -> list[Path]:
    """``curves.csv`` (``ranking, percentage, pruned_channels, acc, loss[, finetuned_*]`` rows) plus the plots
    of the rankings and of the deltas present in ``result``."""
    rows = [{"ranking": name, **row} for name, curve in result.curves.items() for row in curve]
    paths = [write_rows(rows, directory / "curves.csv")]
    for group, mixed, colormap in (("rankings", False, None), ("deltas", True, "viridis")):
        curves = {k: c for k, c in result.curves.items() if (describe(k)["ranking"] == "mixed") == mixed}
        if curves:
            path = directory / f"{group}.png"
            paths.append(plot_curves(curves, result.baseline, f"{title}: {group}", path, colormap))
    return paths
