"""The trials of a search as the report reads them: Optuna's record from ``summary.json``, MLflow's metrics (formulas §8).

Each trial's run config is resolved again from the space the search logged (``resolved_space.json`` on the parent
run), so it is exactly what the trial trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tuneprune.reports.source import Source
from tuneprune.reports.usable import accuracy_metric
from tuneprune.runs import TrialSpec
from tuneprune.search.space import SearchSpace
from tuneprune.shared.config import validate

# Metrics of the learning curves: accuracy, S_k, theta and mu per epoch (formulas §1.5, §2, §3).
CURVE_METRICS = ("val_acc", "sparsity_k", "theta", "mask_stability")


@dataclass
class Trial:
    """One trial: its Optuna record, the run config it trained, its final MLflow metrics and its run's start and end (s)."""

    key: str
    grid: dict[str, Any]
    params: dict[str, Any]
    state: str
    values: dict[str, float]
    run_id: str | None
    config: TrialSpec
    metrics: dict[str, float] = field(default_factory=dict)
    started: float | None = None
    ended: float | None = None

    @property
    def complete(self) -> bool:
        return self.state == "COMPLETE"

    def result(self, metric: str) -> float | None:
        """The trial's objective value of ``metric``, else its final MLflow value (None: not logged)."""
        return self.values.get(metric, self.metrics.get(metric))


@dataclass
class SearchData:
    """A finished search: its space, every trial and the best (or Pareto) trials per grid point."""

    source: Source
    space: SearchSpace
    trials: list[Trial]

    @property
    def objectives(self) -> dict[str, str]:
        return dict(self.space.objectives)

    @property
    def accuracy_metric(self) -> str:
        """The accuracy the fronts use (:func:`~tuneprune.reports.usable.accuracy_metric`)."""
        return accuracy_metric(self.objectives)

    @property
    def best_keys(self) -> list[str]:
        return [entry["key"] for entry in self.source.summary["best"]]

    def trial(self, key: str) -> Trial:
        return next(t for t in self.trials if t.key == key)

    def history(self, trial: Trial, metric: str) -> list[tuple[int, float]]:
        """``(epoch, value)`` of one metric of a trial's run, by epoch (none when the trial has no run)."""
        if not trial.run_id:
            return []
        return sorted((m.step, m.value) for m in self.source.client.get_metric_history(trial.run_id, metric))


def logged_space(source: Source) -> SearchSpace:
    """The space the search ``source`` names ran, as it logged it (``resolved_space.json`` on the parent run); the store
    is checked first (asked for a run, a missing SQLite store would be created empty)."""
    source.check_tracking()
    return validate(SearchSpace, json.loads(source.artifact_text(source.parent_run_id, "resolved_space.json")))


def load_search(source: Source) -> SearchData:
    """Every trial of the search ``source`` names, with its resolved config and final metrics."""
    source.require_search()
    space = logged_space(source)
    trials = []
    for t in source.summary["trials"]:
        if "config" in t and t["config"] is None:  # values the run config refused together: failed, never run
            continue
        run_id = t.get("mlflow_run_id")
        run = source.client.get_run(run_id) if run_id else None
        metrics = dict(run.data.metrics) if run else {}
        started, ended = (run.info.start_time, run.info.end_time) if run else (None, None)
        config = space.resolve(t["grid"], t["params"])
        trials.append(Trial(
            t["key"], t["grid"], t["params"], t["state"], t["values"], run_id, config, metrics,
            started / 1000 if started else None, ended / 1000 if ended else None,
        ))  # fmt: skip
    return SearchData(source, space, trials)
