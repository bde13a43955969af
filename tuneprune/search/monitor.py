"""Driver-side Tune callback: true MLflow statuses for stopped and crashed trials, and a live display."""

from __future__ import annotations

import math
from typing import Any

from ray.tune import Callback

from tuneprune.tracking import RunTracker


class SearchMonitor(Callback):
    """Marks early-stopped trials KILLED and crashed ones FAILED in MLflow; shows progress.

    A trial ASHA stops never reaches the end of its function, so the driver, which sees
    it end with fewer epochs than configured, sets the status.
    """

    def __init__(self, tracker: RunTracker, objectives: dict[str, str], total: int, show: bool) -> None:
        self.tracker = tracker
        self.objectives = objectives
        self.total = total
        self.counts = {"running": 0, "finished": 0, "killed": 0, "failed": 0}
        self.best: float | None = None
        self._live = None
        if show:
            from rich.live import Live

            self._live = Live(self._render(), refresh_per_second=2, transient=False)
            self._live.start()

    def _render(self):
        from rich.table import Table

        table = Table(title="search", show_header=True)
        for key in ("running", "finished", "killed", "failed"):
            table.add_column(key)
        first = next(iter(self.objectives))
        table.add_column(f"best {first}")
        best = "-" if self.best is None else f"{self.best:.4f}"
        table.add_row(*(str(self.counts[k]) for k in ("running", "finished", "killed", "failed")), best)
        table.caption = f"{sum(self.counts[k] for k in ('finished', 'killed', 'failed'))}/{self.total} trials done"
        return table

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def on_trial_start(self, iteration, trials, trial, **info) -> None:  # noqa: ANN001
        self.counts["running"] += 1
        self._refresh()

    def _note_best(self, result: dict[str, Any]) -> None:
        first, direction = next(iter(self.objectives.items()))
        value = result.get(first)
        if value is None or not math.isfinite(value) or "error" in result:
            return
        if self.best is None or (value > self.best if direction == "max" else value < self.best):
            self.best = value

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:  # noqa: ANN001
        result = trial.last_result or {}
        self.counts["running"] -= 1
        run_id = result.get("mlflow_run_id")
        if "error" in result:
            self.counts["failed"] += 1
        elif result.get("epoch", 0) < result.get("epochs", 0):
            self.counts["killed"] += 1
            if run_id:
                self.tracker.finish(run_id, "KILLED")
        else:
            self.counts["finished"] += 1
            self._note_best(result)
        self._refresh()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:  # noqa: ANN001
        self.counts["running"] -= 1
        self.counts["failed"] += 1
        run_id = (trial.last_result or {}).get("mlflow_run_id") or self.tracker.find_child(
            trial.config["ctx"]["parent_run_id"], trial.config["key"]
        )
        if run_id:
            error = str(getattr(trial, "error_file", "") or "worker error")
            self.tracker.finish(run_id, "FAILED", f"trial failed after retries; see {error}")
        self._refresh()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
