"""``tuneprune fit-scheduler``: the constants an adaptive-scheduler search found, as presets (SPEC 3, SPEC 8).

The best trials (the accuracy / mean-mask-stability Pareto set of a two-objective search)
each become a preset file of A, B, C and D, the format ``sparsity.scheduler.preset: PATH``
reads (:func:`tuneprune.sparsity.preset_constants`). Plots: lambda(S) of the published
presets and of the found constants, and the sparsity per epoch of the found trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tuneprune.config import ConfigError
from tuneprune.reports.document import Report
from tuneprune.reports.figures import integer_x, new_figure
from tuneprune.reports.trials import SearchData, Trial
from tuneprune.sparsity import PRESETS, AdaptiveScheduler, preset_constants
from tuneprune.training import RunConfig, model_family

CONSTANTS = ("A", "B", "C", "D")


def scheduler_constants(config: RunConfig) -> dict[str, float]:
    """A, B, C, D a trial's adaptive scheduler ran with: its preset's, overridden by explicit values (as the engine does)."""
    cfg = config.sparsity.scheduler
    constants = preset_constants(cfg.preset, model_family(config.model)) if cfg.preset is not None else {}
    return {**constants, **{k: getattr(cfg, k) for k in CONSTANTS if getattr(cfg, k) is not None}}


def scheduler_trials(data: SearchData) -> list[Trial]:
    """The best trials, checked to be adaptive-scheduler trials of a search over its constants."""
    searched = [p for p in data.space.params if p.startswith("sparsity.scheduler.")]
    best = [data.trial(k) for k in data.best_keys]
    if not searched or any(t.config.sparsity is None or t.config.sparsity.scheduler.type != "adaptive" for t in data.trials):
        raise ConfigError(f"source = {data.source.label!r}: not a search over adaptive-scheduler constants (SPEC 3)")
    if not best:
        raise ConfigError(f"source = {data.source.label!r}: no trial completed")
    return best


def write_preset(trial: Trial, search: str, path: Path) -> Path:
    constants = scheduler_constants(trial.config)
    header = (
        f"# Adaptive-scheduler preset (SPEC 3) found by search {search}, trial {trial.key}.\n"
        f"# Use as sparsity.scheduler.preset: {path.name}; the trial started from\n"
        f"# sparsity.scheduler.initial_sparsity = {trial.config.sparsity.scheduler.initial_sparsity} (not part of a preset).\n"
    )
    path.write_text(header + yaml.safe_dump({k: float(constants[k]) for k in CONSTANTS}, sort_keys=False))
    return path


def lambda_figure(found: Sequence[tuple[str, dict[str, float]]], family: str) -> Any:
    """lambda(S) of lambda1, lambda2 (D of ``family``) and of each found set of constants."""
    fig, (ax,) = new_figure()
    s = np.linspace(0.0, 1.0, 400)
    curves = [(name, preset_constants(name, family), "--") for name in PRESETS] + [(label, c, "-") for label, c in found]
    for label, constants, style in curves:
        scheduler = AdaptiveScheduler(**constants, final_sparsity=1.0, epochs=160)
        ax.plot(s, [scheduler.lambda_at(x) for x in s], style, label=label)
    ax.set_xlabel("sparsity S")
    ax.set_ylabel("lambda(S)")
    ax.legend(fontsize=8)
    return fig


def trajectory_figure(data: SearchData, trials: Sequence[Trial]) -> Any:
    """The schedule's sparsity S_k at the end of each epoch, one line per trial."""
    fig, (ax,) = new_figure()
    for trial in trials:
        history = data.history(trial.run_id, "sparsity_k")
        ax.plot(*zip(*history), marker=".", label=f"{trial.key} (target {trial.config.sparsity.target})")
    ax.set_xlabel("epoch")
    integer_x(ax)
    ax.set_ylabel("sparsity_k")
    ax.legend(fontsize=8)
    return fig


def scheduler_report(report: Report, data: SearchData) -> list[Path]:
    """The constants table, one preset per best trial, and the two figures; returns the preset files."""
    trials = scheduler_trials(data)
    report.heading("Found constants" + (" (Pareto set per grid point)" if len(data.objectives) > 1 else " (best per grid point)"))
    presets, rows, found = [], [], []
    for trial in trials:
        path = report.add_file(write_preset(trial, data.source.name, report.out / f"preset-{trial.key}.yaml"))
        constants = scheduler_constants(trial.config)
        presets.append(path)
        found.append((trial.key, constants))
        rows.append({
            "trial": trial.key, **trial.grid, **constants,
            "initial_sparsity": trial.config.sparsity.scheduler.initial_sparsity, **trial.values, "preset": path.name,
        })  # fmt: skip
    report.table("constants", rows)
    report.heading("lambda(S): published presets and found constants")
    report.figure("lambda", lambda_figure(found, model_family(trials[0].config.model)), "dashed: the published presets (SPEC 3)")
    report.heading("Sparsity per epoch of the found trials")
    report.figure("sparsity_trajectories", trajectory_figure(data, trials))
    return presets
