"""Figures of a search report: importances, accuracy per searched parameter, learning curves against the default
configuration, or the trial closest to it that stands in for it (formulas §8)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from tuneprune.output.plotting import integer_x, new_figure
from tuneprune.reports.document import Report
from tuneprune.reports.trials import CURVE_METRICS, SearchData, Trial
from tuneprune.search.space import CategoricalParam, Param
from tuneprune.tracking.runs import flatten


def grid_label(grid: dict[str, Any]) -> str:
    return " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in grid.items()) or "all trials"


def importance_figure(rows: Sequence[dict[str, Any]]) -> Any:
    """One bar chart per (study, objective)."""
    groups = Counter((r["study"], r["objective"]) for r in rows)
    fig, axes = new_figure(len(groups), 1, height=0.5 + 0.4 * max(groups.values()))
    for ax, (study, objective) in zip(axes, groups, strict=True):
        mine = [r for r in rows if (r["study"], r["objective"]) == (study, objective)]
        ax.barh([r["param"] for r in mine], [r["importance"] for r in mine])
        ax.set_title(f"{study}: {objective}", fontsize=9)
        ax.set_xlim(0, 1)
    return fig


def param_figure(data: SearchData, complete: Sequence[Trial]) -> Any:
    """Accuracy against each searched parameter, one colour per grid point, best trials ringed."""
    fig, axes = new_figure(1, len(data.space.params), width=4.5)
    acc, best = data.accuracy_metric, set(data.best_keys)
    for ax, (path, spec) in zip(axes, data.space.params.items(), strict=True):
        for grid in dict.fromkeys(grid_label(t.grid) for t in complete):  # grid points in trial order: stable
            mine = [t for t in complete if grid_label(t.grid) == grid]
            x = [
                spec.choices.index(t.params[path]) if isinstance(spec, CategoricalParam) else t.params[path]
                for t in mine
            ]
            edges = ["black" if t.key in best else "none" for t in mine]
            ax.scatter(x, [t.result(acc) for t in mine], edgecolors=edges, linewidths=1.5, label=grid)
        if isinstance(spec, CategoricalParam):
            ax.set_xticks(range(len(spec.choices)), [str(c) for c in spec.choices])
        elif spec.log:
            ax.set_xscale("log")
        ax.set_xlabel(path)
        ax.set_ylabel(acc)
    axes[0].legend(fontsize=7, title="ringed: best", title_fontsize=7)
    return fig


def curves_figure(data: SearchData, labelled: Sequence[tuple[Trial, str]]) -> Any:
    """Accuracy, S_k, theta and mu per epoch of each ``(trial, label)``."""
    fig, axes = new_figure(1, len(CURVE_METRICS), width=4.0, height=3.6)
    for ax, metric in zip(axes, CURVE_METRICS, strict=True):
        for trial, label in labelled:
            history = data.history(trial, metric)
            style = "--" if "default" in label else "-"  # the stand-in for the default configuration dashed
            if history:
                ax.plot(*zip(*history, strict=True), marker=".", linestyle=style, label=label)
        ax.set_xlabel("epoch")
        integer_x(ax)
        ax.set_title(metric, fontsize=9)
    axes[0].legend(fontsize=7)
    return fig


def param_distance(value: Any, base: Any, param: Param) -> float:
    """0 for equal values; a numeric difference in units of the searched range (log range for log params); else 1."""
    if isinstance(param, CategoricalParam) or not isinstance(base, (int, float)) or isinstance(base, bool):
        return 0.0 if value == base else 1.0
    scale = math.log if param.log else float
    width = scale(param.high) - scale(param.low)
    return abs(scale(value) - scale(base)) / width if width > 0 else 0.0


def closest_to_default(data: SearchData, trials: Sequence[Trial], grid: dict[str, Any]) -> tuple[Trial, float]:
    """The complete trial of ``grid`` whose searched values are closest to the base config's, and its distance: the
    summed :func:`param_distance` of each searched path from the base run config's value (None where it is unset)."""
    params, base = data.space.params, flatten(data.space.resolve(grid, {}).model_dump(mode="json"))
    distances = [
        (t, sum(param_distance(t.params[p], base.get(p), param) for p, param in params.items())) for t in trials
    ]
    return min(distances, key=lambda pair: pair[1])


def learning_curves_section(report: Report, data: SearchData) -> None:
    """Per grid point: its best trials against the trial closest to the default configuration."""
    report.heading("Learning curves: best trials against the default configuration")
    best = set(data.best_keys)
    for i, grid in enumerate(data.space.grid_points()):
        trials = [t for t in data.trials if t.complete and t.grid == grid]
        if not trials:
            report.text(f"{grid_label(grid)}: no complete trial, no curves.", note=True)
            continue
        default, distance = closest_to_default(data, trials, grid)
        labelled = [(t, f"{t.key} best") for t in trials if t.key in best and t is not default]
        labelled.append((default, f"{default.key} default" + (" (best)" if default.key in best else "")))
        caption = (
            f"{grid_label(grid)}: {default.key} ran the default (base) configuration."
            if distance == 0
            else f"{grid_label(grid)}: no trial ran the default (base) configuration; {default.key} is the closest "
            f"(distance {distance:.3g} in units of each searched range) and stands in for it (dashed)."
        )
        report.figure(f"learning_curves_{i}", curves_figure(data, labelled), caption)
