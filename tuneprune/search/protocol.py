"""The trial protocol between the search driver and its Ray trainable, typed.

The searcher hands Ray a :class:`PackRequest` of the trials trained together in one actor; the trainable reports
one :class:`TrialResult` per member under ``members``. Ray carries plain values only, so each type converts at
that boundary with ``to_dict``/``from_dict``. :meth:`TrialResult.outcome` is the one finished/killed/failed
decision, and :meth:`TrialResult.end_run` the one place where a trial's MLflow run gets its status from it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from tuneprune.tracking import RunTracker

Outcome = Literal["finished", "killed", "failed"]  # upper case: the MLflow run status
_RESULT_FIELDS = ("epoch", "epochs", "mlflow_run_id", "error", "trial_key", "ended")
MEMBERS = "members"


@dataclass(frozen=True)
class TrialContext:
    """Where every trial of one search is tracked and stored, and what it optimises."""

    tracking_uri: str
    experiment: str
    parent_run_id: str
    results_dir: str
    objectives: dict[str, str]
    stopper: str | None = None  # the named Ray actor deciding early stops (formulas §10.9; None: no early stopping)

    def trial_dir(self, key: str) -> Path:
        """The trial's own directory in the search's results (its checkpoint, its saved model)."""
        return Path(self.results_dir) / "trials" / key


@dataclass(frozen=True)
class TrialRequest:
    """One trial of a :class:`PackRequest`, with the MLflow child run the driver opened for it and the epoch of the
    checkpoint it goes on from (``resume_epoch``, 0 for a fresh start)."""

    key: str
    number: int
    run_name: str
    grid: dict[str, Any]
    params: dict[str, Any]
    spec: dict[str, Any]
    context: TrialContext
    mlflow_run_id: str | None = None
    resume_epoch: int = 0

    def stop_ask(self, metrics: dict[str, Any]) -> tuple[str, str, int, list[float | None]]:
        """The early-stopping question of this trial after the epoch of ``metrics``: study, key, epoch, objective values."""
        study = self.key.split("-", 1)[0]  # its grid point (Optuna study) g<index>: its key is g<index>-<number>
        return study, self.key, int(metrics["epoch"]), [metrics.get(m) for m in self.context.objectives]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRequest:
        named = {f.name for f in fields(cls)} - {"context"}
        return cls(**{k: data[k] for k in named}, context=TrialContext(**data["context"]))


@dataclass(frozen=True)
class PackRequest:
    """The trials the searcher asks one Ray actor to train together (formulas §10.7): one, or several that share
    a pack key."""

    members: list[TrialRequest]
    context: TrialContext

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PackRequest:
        return cls([TrialRequest.from_dict(m) for m in data[MEMBERS]], TrialContext(**data["context"]))


@dataclass(frozen=True)
class TrialResult:
    """One report of a trial: the epoch reached of ``epochs``, its MLflow run, an error, the metrics. ``ended``:
    True in the report after which the member trains no more, False while it trains on."""

    epoch: int | None = None
    epochs: int | None = None
    mlflow_run_id: str | None = None
    error: str | None = None
    trial_key: str | None = None
    ended: bool | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        named = {k: getattr(self, k) for k in _RESULT_FIELDS if getattr(self, k) is not None}
        return {**self.metrics, **named}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrialResult:
        data = data or {}
        metrics = {k: v for k, v in data.items() if k not in _RESULT_FIELDS}
        return cls(**{k: data[k] for k in _RESULT_FIELDS if data.get(k) is not None}, metrics=metrics)

    def outcome(self) -> Outcome:
        """``failed`` when the trial reported an error, ``killed`` when it ended before its last
        epoch (a scheduler stopped it), else ``finished``."""
        if self.error is not None:
            return "failed"
        if self.epoch is None or self.epochs is None or self.epoch < self.epochs:
            return "killed"
        return "finished"

    def end_run(self, tracker: RunTracker, detail: str | None = None) -> None:
        """End the trial's MLflow run with the status of its :meth:`outcome`; a failed one has its error (or
        ``detail``) tagged."""
        assert self.mlflow_run_id is not None  # opened by the driver as it handed the trial out
        outcome = self.outcome()
        tracker.finish(self.mlflow_run_id, outcome.upper(), (detail or self.error) if outcome == "failed" else None)

    def value(self, name: str) -> float | None:
        """The finite value of metric ``name``, or None (absent, not a number, NaN or infinite)."""
        value = self.metrics.get(name)
        return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def member_results(result: dict[str, Any] | None) -> dict[str, TrialResult]:
    """The members' results in one Ray report, by trial key; Tune hands searchers the report flattened
    (``members/g0-001/val_acc``), callbacks nested."""
    result = result or {}
    members: dict[str, dict[str, Any]] = dict(result.get(MEMBERS, {}))
    for name, value in result.items():
        if name.startswith(f"{MEMBERS}/"):
            _, key, field_name = name.split("/", 2)
            members.setdefault(key, {})[field_name] = value
    return {key: TrialResult.from_dict(member) for key, member in members.items()}
