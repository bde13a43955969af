"""Driver-side Tune callback: true MLflow statuses for stopped and crashed trials, and a live display.

Ray pickles the callback with the Tuner (before the run starts), so the display is created
in :meth:`SearchMonitor.setup`, which Tune calls in the driver, and is never pickled.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ray.tune import Callback

from tuneprune.output.progress import LiveStatus
from tuneprune.search.protocol import PackRequest, TrialResult, member_results
from tuneprune.search.trainable import drop_checkpoints_before
from tuneprune.tracking import RunTracker


class SearchMonitor(Callback):
    """Ends the MLflow runs of the trials whose worker could not, and shows progress.

    A trial's run ends FAILED when Ray gave up on its worker after the retries, KILLED when Tune
    stopped it before it ended (a worker ends the others); an ended trial's checkpoints are
    deleted. Trials are counted one by one, pack members too, and so are those the run config
    refused (:meth:`count_refused`).
    """

    def __init__(self, tracker: RunTracker, objectives: Mapping[str, str], total: int, show: bool) -> None:
        self.tracker = tracker
        self.objectives = objectives
        self.total = total
        self.show = show
        self.counts = {"running": 0, "finished": 0, "killed": 0, "failed": 0}
        self.epochs: dict[str, str] = {}  # trial key -> "epoch/epochs" of the running trials
        self.counted: set[str] = set()  # keys of the trials counted as ended
        self.refused = 0  # trials the run config refused, never run: done and failed
        self.best: float | None = None
        self._started = time.monotonic()
        self._display: LiveStatus | None = None  # driver only: never pickled (see __getstate__)

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles its callbacks with the Tuner; a started display (threads, locks) stays behind."""
        return {**self.__dict__, "_display": None}

    def setup(self, *args: Any, **info: Any) -> None:  # Tune calls this in the driver when the run starts
        if self.show and self._display is None:
            self._display = LiveStatus(self._render, self._line)

    def _figures(self) -> tuple[str, str, int, str, str]:
        """What both views show: time, ``done/total``, failed, the running trials' epochs, the best first objective."""
        failed = self.counts["failed"] + self.refused
        done = self.counts["finished"] + self.counts["killed"] + failed
        epochs = f" (epochs {', '.join(self.epochs.values())})" if self.epochs else ""
        best = "-" if self.best is None else f"{self.best:.4f}"
        return f"{time.monotonic() - self._started:.0f} s", f"{done}/{self.total}", failed, epochs, best

    def _render(self):  # -> a rich Table, imported lazily
        from rich.table import Table

        elapsed, done, failed, epochs, best = self._figures()
        table = Table(title=f"search, {elapsed}", show_header=False)
        table.add_column(no_wrap=True)
        table.add_column(overflow="fold")
        table.add_row("trials done", f"{done} ({self.counts['killed']} stopped early, {failed} failed)")
        table.add_row("running", f"{self.counts['running']}{epochs}")
        table.add_row(f"best {next(iter(self.objectives))}", best)
        return table

    def _line(self) -> str:
        elapsed, done, failed, epochs, best = self._figures()
        return (  # plain text: never parsed as markup
            f"search {elapsed}: {done} trials done, {self.counts['running']} running{epochs}, "
            f"{self.counts['killed']} stopped early, {failed} failed; "
            f"best {next(iter(self.objectives))} {best}"
        )

    def count_refused(self) -> None:
        """A trial whose values the run config refused together: failed without a Ray trial. Called on the searcher's
        storage thread, hence a counter of its own."""
        self.refused += 1

    def _refresh(self, force: bool = False) -> None:
        if self._display is not None:
            self._display.update(force)

    def on_step_end(self, iteration, trials, **info) -> None:  # a heartbeat between events
        self._refresh()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.counts["running"] += len(PackRequest.from_dict(trial.config).members)
        self._refresh()

    def _count_ended(self, key: str, outcome: str, result: TrialResult) -> None:
        self.counted.add(key)
        self.counts["running"] -= 1
        self.counts[outcome] += 1
        self.epochs.pop(key, None)
        first, direction = next(iter(self.objectives.items()))
        value = result.value(first) if outcome == "finished" else None
        if value is not None:
            self.best = value if self.best is None else (max if direction == "max" else min)(self.best, value)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        for key, reported in member_results(result).items():
            if key in self.counted:
                continue
            if reported.ended:
                self._count_ended(key, reported.outcome(), reported)
            elif reported.epoch is not None and reported.epochs is not None:
                self.epochs[key] = f"{reported.epoch}/{reported.epochs}"
        self._refresh()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._end(trial, None)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._end(trial, f"trial failed after retries; see {getattr(trial, 'error_file', '') or 'worker error'}")

    def _end(self, trial, error: str | None) -> None:  # trial: a ray.tune Trial
        """Count the members of an ended Ray trial not counted yet, end the runs their worker did not (FAILED with
        ``error``, else KILLED), then delete its checkpoints, Tune's and its members' own."""
        reported = member_results(trial.last_result)
        requests = PackRequest.from_dict(trial.config).members
        for request in requests:
            if request.key in self.counted:
                continue
            result = reported.get(request.key, TrialResult())
            outcome = result.outcome() if error is None else "failed"
            if error is not None or (outcome == "killed" and not result.ended):  # the run the driver opened for it
                replace(result, mlflow_run_id=request.mlflow_run_id, error=error).end_run(self.tracker)
            self._count_ended(request.key, outcome, result)
        if trial.path:  # glob finds nothing in a directory that is not there
            for directory in Path(trial.path).glob("checkpoint_*"):
                shutil.rmtree(directory, ignore_errors=True)
        for request in requests:
            drop_checkpoints_before(request.context.trial_dir(request.key))
        self._refresh(force=True)

    def on_experiment_end(self, trials, **info) -> None:
        self.close()

    def close(self) -> None:
        if self._display is not None:
            self._display.close()
            self._display = None
