"""``tuneprune fit-scheduler``: the constants an adaptive-scheduler search found, as presets (formulas §3, formulas §8).

Only usable trials are judged (:mod:`tuneprune.reports.usable`): a scheduler that never reaches its target is not a
preset, however accurate its dense-ish network. Per grid point, the best of those (the accuracy / mean-mask-stability
Pareto set of a two-objective search, by the rule of :mod:`tuneprune.shared.pareto`) each become a preset file of A,
B, C and D, the format ``sparsity.scheduler.preset: PATH`` reads (:func:`tuneprune.sparsity.preset_constants`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuneprune.output.plotting import integer_x, new_figure
from tuneprune.reports.document import Report
from tuneprune.reports.trials import SearchData, Trial
from tuneprune.reports.usable import DEFAULT_RULES, UsabilityRules, chance_accuracy
from tuneprune.runs.paths import SCHEDULER_CONSTANTS
from tuneprune.shared.config import ConfigError
from tuneprune.shared.pareto import non_dominated
from tuneprune.sparsity import PRESETS, AdaptiveScheduler, ModelFamily, SparsityConfig, preset_constants
from tuneprune.training import RunConfig

CONSTANTS = ("A", "B", "C", "D")


def sparsity_of(config: RunConfig) -> SparsityConfig:
    """A trial's sparsity settings: a scheduler report's trials are sparse (:func:`scheduler_trials` checks)."""
    assert config.sparsity is not None
    return config.sparsity


@dataclass(frozen=True)
class JudgedTrial:
    """A complete trial, its achieved sparsity, the epoch it reached its target (None: never) and why it is left out."""

    trial: Trial
    target: float
    sparsity: float | None
    reached_epoch: int | None
    excluded: str | None


def judge(data: SearchData, trial: Trial, rules: UsabilityRules) -> JudgedTrial:
    """Achieved sparsity at the last epoch, first epoch at target within the tolerance, and the usability verdict."""
    target = sparsity_of(trial.config).target
    history = data.history(trial, "sparsity")
    reached = next((int(epoch) for epoch, value in history if value >= target - rules.sparsity_tolerance), None)
    achieved = trial.metrics.get("sparsity")
    accuracy = data.accuracy_metric
    chance = chance_accuracy(trial.config.model_dump())
    reason = rules.reason(target, achieved, trial.result(accuracy), chance, accuracy)
    return JudgedTrial(trial, target, achieved, reached, reason)


def pareto_sets(data: SearchData, judged: Sequence[JudgedTrial]) -> list[JudgedTrial]:
    """Per grid point, the usable trials no other usable trial dominates in the search's objectives (ties kept)."""
    objectives = data.objectives
    chosen = []
    for grid in dict.fromkeys(json.dumps(j.trial.grid, sort_keys=True) for j in judged):
        usable = [j for j in judged if j.excluded is None and json.dumps(j.trial.grid, sort_keys=True) == grid]
        values = np.array([[j.trial.values[m] for m in objectives] for j in usable], dtype=float)
        chosen += [usable[i] for i in non_dominated(values, list(objectives.values()))]
    return chosen


def scheduler_trials(data: SearchData, rules: UsabilityRules) -> tuple[list[JudgedTrial], list[JudgedTrial]]:
    """Every complete trial judged, and the per-grid-point Pareto sets of the usable ones (checked to be a constants search)."""
    searched = [p for p in data.space.params if p.startswith(SCHEDULER_CONSTANTS)]
    if not searched or any(
        t.config.sparsity is None or t.config.sparsity.scheduler.type != "adaptive" for t in data.trials
    ):
        raise ConfigError(
            f"source = {data.source.label!r}: not a search over adaptive-scheduler constants (formulas §3)"
        )
    judged = [judge(data, t, rules) for t in data.trials if t.complete]
    best = pareto_sets(data, judged)
    if not best:
        left = "; ".join(f"{j.trial.key}: {j.excluded}" for j in judged) or "no trial completed"
        raise ConfigError(f"source = {data.source.label!r}: no trial is usable ({rules.describe()}): {left}")
    return judged, best


def write_preset(report: Report, trial: Trial, constants: dict[str, float], search: str) -> Path:
    """``preset-KEY.yaml`` beside the report: the trial's A, B, C, D, headed by where they come from."""
    name = f"preset-{trial.key}.yaml"
    header = (
        f"# Adaptive-scheduler preset (formulas §3) found by search {search}, trial {trial.key}.\n"
        f"# Use as sparsity.scheduler.preset: {name}; the trial started from\n"
        f"# sparsity.scheduler.initial_sparsity = {sparsity_of(trial.config).scheduler.initial_sparsity} (not part of a preset).\n"
    )
    return report.write_yaml(name, {k: float(v) for k, v in constants.items()}, header)


def lambda_figure(found: Sequence[tuple[str, ModelFamily, dict[str, float]]]) -> Any:
    """lambda(S), one panel per model family of the found constants ``(label, family, constants)``: lambda1 and
    lambda2 with that family's D (formulas §3) and each set of constants found on a trial of that family."""
    families = list(dict.fromkeys(family for _, family, _ in found))
    fig, axes = new_figure(1, len(families))
    s = np.linspace(0.0, 1.0, 400)
    for ax, family in zip(axes, families, strict=True):
        published = [(name, preset_constants(name, family), "--") for name in PRESETS]
        for label, constants, style in published + [(label, c, "-") for label, f, c in found if f == family]:
            scheduler = AdaptiveScheduler(**constants, final_sparsity=1.0, epochs=160)
            ax.plot(s, [scheduler.lambda_at(x) for x in s], style, label=label)
        ax.set_title(f"{family} family")
        ax.set_xlabel("sparsity S")
        ax.set_ylabel("lambda(S)")
        ax.legend(fontsize=8)
    return fig


def trajectory_figure(data: SearchData, trials: Sequence[Trial]) -> Any:
    """The schedule's sparsity S_k at the end of each epoch, one line per trial."""
    fig, (ax,) = new_figure()
    for trial in trials:
        label = f"{trial.key} (target {sparsity_of(trial.config).target})"
        ax.plot(*zip(*data.history(trial, "sparsity_k"), strict=True), marker=".", label=label)
    ax.set_xlabel("epoch")
    integer_x(ax)
    ax.set_ylabel("sparsity_k")
    ax.legend(fontsize=8)
    return fig


def scheduler_report(
    report: Report, data: SearchData, rules: UsabilityRules = DEFAULT_RULES
) -> tuple[list[Path], list[dict[str, Any]]]:
    """The trials table, the constants table, one preset per chosen trial and the two figures; returns the preset files
    and the trials table (what the command prints)."""
    judged, chosen = scheduler_trials(data, rules)
    rows = [  # every complete trial: target, achieved sparsity, the epoch it got there, objectives, verdict
        {
            "trial": j.trial.key, **j.trial.grid, "target": j.target, "sparsity": j.sparsity, "reached_epoch": j.reached_epoch,
            **j.trial.values, "pareto": j in chosen, "excluded": j.excluded or "",
        }
        for j in judged
    ]  # fmt: skip
    report.heading("Trials judged")
    report.text(
        f"{len(judged)} complete trials; {rules.describe()}; sparsity is the achieved sparsity at the last epoch."
    )
    report.table("trials", rows)
    report.heading(
        "Found constants" + (" (Pareto set per grid point)" if len(data.objectives) > 1 else " (best per grid point)")
    )
    presets, constant_rows = [], []
    found: list[tuple[str, ModelFamily, dict[str, float]]] = []
    for j in chosen:
        trial, scheduler = j.trial, sparsity_of(j.trial.config).scheduler
        constants = {k: getattr(scheduler, k) for k in CONSTANTS}  # a preset's resolved at config load
        path = write_preset(report, trial, constants, data.source.name)
        presets.append(path)
        found.append((trial.key, scheduler.family, constants))
        constant_rows.append({
            "trial": trial.key, **trial.grid, **constants, "initial_sparsity": scheduler.initial_sparsity,
            "sparsity": j.sparsity, "reached_epoch": j.reached_epoch, **trial.values, "preset": path.name,
        })  # fmt: skip
    report.remove_stale(r"preset-g\d+-\d+\.yaml")  # the names write_preset gives (trial keys)
    report.table("constants", constant_rows)
    report.heading("lambda(S): published presets and found constants")
    report.figure(
        "lambda", lambda_figure(found), "dashed: the published presets with each panel's model family's D (formulas §3)"
    )
    report.heading("Sparsity per epoch of the found trials")
    report.figure("sparsity_trajectories", trajectory_figure(data, [j.trial for j in chosen]))
    return presets, rows
