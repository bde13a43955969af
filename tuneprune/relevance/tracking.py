"""MLflow records of a relevance study (formulas §6): a parent run of kind ``relevance`` and
one child run of kind ``ranking`` per ranking or delta, with ``acc`` and ``loss`` (and
``finetuned_acc``/``finetuned_loss`` when fine-tuning) at step = pruned percentage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneprune.relevance.rankings import describe
from tuneprune.relevance.study import Row, StudyResult
from tuneprune.shared.config import ConfigError
from tuneprune.tracking import RunTracker, child_run

KIND = "relevance"
CHILD_KIND = "ranking"


class StudyTracker:
    """The parent run of one study and the logging of its curves and artifacts."""

    def __init__(self, tracker: RunTracker, name: str) -> None:
        """Refuse a name that an earlier study used, before any work starts."""
        existing = tracker.find_parent(name, KIND)
        if existing is not None:
            raise ConfigError(
                f"name = {name!r}: a relevance study of that name exists "
                f"(MLflow run {existing.info.run_id}); choose another --name"
            )
        self.tracker = tracker
        self.name = name
        self.parent_id = ""

    def start(self, parent_id: str, config: dict[str, Any], model_source: dict[str, str]) -> None:
        """Take the parent run (opened by :func:`tuneprune.tracking.parent_run`) and log the study config and model source."""
        self.parent_id = parent_id
        self.tracker.log_params(parent_id, {**config, "model_source": model_source})

    def log_curve(self, ranking: str, rows: list[Row]) -> None:
        """A finished child run holding one curve (ended KILLED or FAILED if its logging is stopped)."""
        run_name = f"{self.name}/{ranking}"
        with child_run(self.tracker, self.parent_id, ranking, run_name, CHILD_KIND) as (run_id, new_run):
            self.tracker.log_params(run_id, describe(ranking), new_run=new_run)
            for row in rows:
                metrics = {k: v for k, v in row.items() if k != "percentage"}
                self.tracker.log_metrics(run_id, metrics, step=int(row["percentage"]))

    def finish(self, result: StudyResult, artifacts: list[Path]) -> None:
        """Log the unpruned metrics and the channel count (step 0) and the files (the parent run's context ends it)."""
        baseline = {f"base_{k}": v for k, v in result.baseline.items()}
        self.tracker.log_metrics(self.parent_id, {**baseline, "channels": result.num_channels}, step=0)
        for path in artifacts:
            self.tracker.log_artifact(self.parent_id, path)
