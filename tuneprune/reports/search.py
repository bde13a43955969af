"""The report of a search (formulas §8): fronts and hypervolumes, the anytime view, best trials, importances,
per-parameter accuracy, learning curves, the best alpha per target and the best configuration as a runnable YAML."""

from __future__ import annotations

import functools
import itertools
import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tuneprune.output.commands import tuneprune_command
from tuneprune.output.plotting import new_figure
from tuneprune.reports.alpha import alpha_candidates, alpha_figure, best_alpha_points
from tuneprune.reports.document import Report
from tuneprune.reports.search_figures import grid_label, importance_figure, learning_curves_section, param_figure
from tuneprune.reports.sections import front_section
from tuneprune.reports.study_table import study_section
from tuneprune.reports.trials import SearchData, Trial
from tuneprune.reports.usable import DEFAULT_RULES
from tuneprune.runs.paths import THETA_ALPHA
from tuneprune.shared.config import ConfigError
from tuneprune.shared.pareto import Plane, best_of, front_indices, hypervolume
from tuneprune.tracking import check_storage_reachable, store_missing

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial


def trial_row(data: SearchData, trial: Trial) -> dict[str, Any]:
    """A trial as a table row: key, grid values, searched values, accuracy, achieved sparsity and the objectives."""
    acc = data.accuracy_metric
    return {
        "trial": trial.key, **trial.grid, **trial.params, acc: trial.result(acc),
        "sparsity": trial.metrics.get("sparsity", 0.0),
        **{m: trial.values[m] for m in data.objectives if m not in (acc, "sparsity")},
    }  # fmt: skip


def is_plain_feather(trial: Trial) -> bool:
    """A sparse trial of Feather as published: :attr:`SparsityConfig.is_feather` (formulas §1, §9)."""
    return trial.config.sparsity is not None and trial.config.sparsity.is_feather


def feather_baseline(data: SearchData, complete: list[Trial]) -> dict[str, np.ndarray]:
    """The most accurate plain-Feather trial per target sparsity, as a curve on the accuracy-sparsity plane."""
    acc = data.accuracy_metric
    best: dict[float, tuple[float, float]] = {}
    for t in filter(is_plain_feather, complete):
        assert t.config.sparsity is not None  # is_plain_feather checked it
        row = trial_row(data, t)
        if row[acc] > best.get(t.config.sparsity.target, (0.0, -np.inf))[1]:
            best[t.config.sparsity.target] = (row["sparsity"], row[acc])
    return {"plain Feather (best per target)": np.array(sorted(best.values()))} if best else {}


def planes(data: SearchData) -> list[Plane]:
    """Accuracy against sparsity, and every pair of the other objectives (accuracy on the y axis)."""
    directions = {data.accuracy_metric: "max", "sparsity": "max", **data.objectives}
    others = sorted((m for m in data.objectives if m != "sparsity"), key=lambda m: m != data.accuracy_metric)
    accuracy = Plane("sparsity", data.accuracy_metric, directions["sparsity"], directions[data.accuracy_metric])
    return [accuracy] + [Plane(x, y, directions[x], directions[y]) for y, x in itertools.combinations(others, 2)]


def fronts(report: Report, data: SearchData, complete: list[Trial]) -> None:
    """A front per plane (the accuracy one with the plain-Feather baseline when there is one), then the hypervolume table."""
    rows = [trial_row(data, t) for t in complete]
    baseline = feather_baseline(data, complete)
    accuracy, *others = planes(data)
    hv_rows = [front_section(report, rows, accuracy, baselines=baseline)]
    if not baseline:
        report.text(
            "No plain-Feather trial (p = 3, global threshold, every layer, feather theta, cubic schedule from epoch 0 to half "
            "of training, no elimination) in this search: no baseline.",
            note=True,
        )
    hv_rows += [front_section(report, rows, plane) for plane in others]
    report.heading("Hypervolumes")
    report.table("hypervolume", hv_rows)


def _ended(trial: Trial) -> float:
    assert trial.ended is not None  # only ended trials are ordered and timed
    return trial.ended


def anytime_rows(
    trials: Sequence[Trial], point: Callable[[Trial], tuple[float, float]], plane: Plane
) -> list[dict[str, Any]]:
    """One row per ended trial: grid point, trial, state, cumulative epochs and wall time (s), front hypervolume.

    Trials are taken in the order their runs ended. After each, the grid point's front is that of its completed trials
    so far, its hypervolume measured against the reference of all the grid point's completed trials
    (:meth:`~tuneprune.shared.pareto.Plane.reference`), so the curve only rises; the cost is the epochs all its trials
    trained (those stopped early and those that failed included) and the wall time since the search's first trial
    started."""
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


def anytime(report: Report, data: SearchData) -> None:
    """Each grid point's front hypervolume after each ended trial, against epochs and wall time (formulas §10.9), on the
    plane of the search's two objectives (the first on y); with one or more than two, accuracy against sparsity."""
    if len(data.objectives) == 2:
        (y, y_direction), (x, x_direction) = data.objectives.items()
        plane = Plane(x, y, x_direction, y_direction)
    else:
        plane = planes(data)[0]
    rows = anytime_rows(data.trials, lambda t: (trial_row(data, t)[plane.x], trial_row(data, t)[plane.y]), plane)
    report.heading(f"Anytime view: hypervolume of each grid point's front ({plane.y} vs {plane.x})")
    if not rows:
        report.text("No trial run ended.", note=True)
        return
    report.figure(
        "anytime_hypervolume",
        anytime_figure(rows, plane),
        "after each ended trial; trials stopped early count their epochs",
    )
    report.table("anytime_hypervolume", rows, "the hypervolume after each ended trial", inline=False)


def best_table(report: Report, data: SearchData) -> None:
    """The best trial (or Pareto set) of every grid point, with its test accuracy."""
    report.heading("Pareto set per grid point" if len(data.objectives) > 1 else "Best trial per grid point")
    rows = [{**trial_row(data, t), "test_acc": t.metrics.get("test_acc")} for t in map(data.trial, data.best_keys)]
    if rows:
        report.table("best_trials", rows)
    else:
        report.text("No trial completed.", note=True)


def objective_value(trial: FrozenTrial, index: int) -> float:
    """The trial's value of objective ``index`` (what a multi-objective importance is computed on)."""
    return trial.values[index]


def study_importances(data: SearchData) -> tuple[list[dict[str, Any]], list[str]]:
    """Parameter importances: Optuna's fANOVA on the study of each grid point, per objective. Rows
    ``(study, objective, param, importance)`` and a note for every study where they cannot be computed: with
    fewer than two complete trials, no searched parameter that takes more than one value among them, or an objective
    that does not; one note when the search's Optuna storage is gone (a SQLite file) or out of reach (a database server)."""
    import optuna
    from optuna.trial import TrialState

    from tuneprune.search.studies import open_storage, study_name

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = data.source.summary["storage_url"]
    if store_missing(url):  # opening it would create an empty one, without the search's studies
        return [], [f"not computable: no Optuna storage at {url}"]
    try:
        check_storage_reachable(url)
    except ConfigError as err:
        return [], [f"not computable: {err}"]
    storage = open_storage(url)
    rows, notes = [], []
    for point in data.space.grid_points():
        name = study_name(data.source.name, point)
        study = optuna.load_study(study_name=name, storage=storage)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        varying = [p for p in data.space.params if len({repr(t.params.get(p)) for t in complete}) > 1]
        if len(complete) < 2 or not varying:
            notes.append(
                f"{name}: not computable ({len(complete)} complete trials, {len(varying)} searched parameters that vary)"
            )
            continue
        for i, objective in enumerate(data.objectives):
            if len({t.values[i] for t in complete}) < 2:
                notes.append(f"{name}: not computable for {objective} (the same value in every complete trial)")
                continue
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            target = functools.partial(objective_value, index=i)
            scores = optuna.importance.get_param_importances(study, evaluator=evaluator, params=varying, target=target)
            rows += [
                {"study": name, "objective": objective, "param": p, "importance": float(v)} for p, v in scores.items()
            ]
    return rows, notes


def importances(report: Report, data: SearchData) -> None:
    """fANOVA importances per study and objective, or why they cannot be computed."""
    report.heading("Parameter importances (Optuna fANOVA per grid-point study)")
    rows, notes = study_importances(data)
    for note in notes:
        report.text(note, note=True)
    if rows:
        report.figure("importances", importance_figure(rows))
        report.table("importances", rows)


def alpha_series(report: Report, data: SearchData) -> None:
    """The best usable alpha per target sparsity when alpha was searched at several targets (formulas §2, formulas §8)."""
    if THETA_ALPHA not in data.space.params:
        return
    candidates = alpha_candidates(data.source, DEFAULT_RULES)
    if len({p.target for p in candidates}) < 2:
        return
    points = best_alpha_points(data.source.summary, candidates)
    excluded = [p for p in candidates if p.excluded is not None]
    report.heading("Best alpha per target sparsity")
    caption = f"grey: the published rule 0.026 tan(23.09 S + 22.08) + 0.093 (formulas §2); x: excluded trials ({DEFAULT_RULES.describe()})"
    report.figure("alpha_per_target", alpha_figure(points, excluded=excluded), caption)
    report.table("alpha_per_target", [vars(p) for p in [*points, *excluded]])


def best_config(report: Report, data: SearchData) -> None:
    """``best.yaml``: the run config of the best trial in the first objective (a tie to the lowest trial key,
    :func:`~tuneprune.shared.pareto.best_of`), which ``tuneprune train`` runs as is and which reproduces the trial's
    metrics exactly on the same kind of device."""
    entries = data.source.summary["best"]
    if not entries:
        return
    (first, direction), *_ = data.objectives.items()
    pick = entries[best_of([e["values"][first] for e in entries], [e["key"] for e in entries], direction)]
    run_id = pick.get("mlflow_run_id")  # the config the trial ran, as it logged it (threads and device included)
    config = json.loads(data.source.artifact_text(run_id, "config.json")) if run_id else pick["config"]
    path = report.write_yaml("best.yaml", config)
    report.heading("Best configuration")
    report.text(
        f"Trial {pick['key']} ({first} = {pick['values'][first]:.4f}); run it with: {tuneprune_command('train', path)}"
    )


def search_report(report: Report, data: SearchData) -> None:
    """Every section of a search report, in order."""
    complete = [t for t in data.trials if t.complete]
    listed = Counter(t["state"] for t in data.source.summary["trials"])  # those the run config refused included
    states = ", ".join(f"{listed[s]} {s.lower()}" for s in sorted(listed))
    grid = "; ".join(f"{k} in {v}" for k, v in data.space.grid.items()) or "none"
    report.text(
        f"Objectives: {', '.join(f'{m} ({d})' for m, d in data.objectives.items())}. Searched: {', '.join(data.space.params) or 'nothing (a grid)'}. "
        f"Grid: {grid}. Trials: {states}. The fronts use the {len(complete)} complete trials; sparsity is the achieved "
        "sparsity at the last epoch."
    )
    fronts(report, data, complete)
    anytime(report, data)
    best_table(report, data)
    if data.space.params:  # a grid search (a study) searches nothing
        importances(report, data)
        report.heading(f"{data.accuracy_metric} against each searched parameter")
        if complete:
            report.figure("accuracy_per_param", param_figure(data, complete))
        else:
            report.text("No trial completed.", note=True)
    learning_curves_section(report, data)
    if data.space.methods:
        study_section(report, data)
    alpha_series(report, data)
    best_config(report, data)
