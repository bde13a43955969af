"""The specification of one trial: a run config plus the evaluations after training (formulas §1.6, formulas §6)."""

from __future__ import annotations

from pydantic import Field

from tuneprune.relevance.settings import PruningPoint
from tuneprune.training.config import RunConfig


class TrialSpec(RunConfig):
    """A :class:`RunConfig` and the optional ``relevance:`` pruning point (formulas §6: channels pruned without
    retraining, also reporting ``pruned_fraction``), in one YAML mapping; training itself reads only the run config."""

    relevance: PruningPoint | None = Field(
        None,
        description="after training, prune channels by this ranking and report pruned_acc/pruned_loss (formulas §6)",
    )
