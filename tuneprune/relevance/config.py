"""The document of ``tuneprune relevance`` (formulas §6): a ``train:`` run config, the
relevance settings and the curves to draw (percentages, rankings, deltas), plus optional
fine-tuning of every pruned model.
"""

from __future__ import annotations

from typing import Annotated, get_args

from pydantic import Field, field_validator, model_validator

from tuneprune.relevance.settings import Ranking, RelevanceSettings
from tuneprune.shared.config import NAME_PATTERN, ExperimentName, StrictModel
from tuneprune.training.config import RunConfig


class FinetuneSettings(StrictModel):
    """Optional fine-tuning of every pruned model with its channel mask held fixed."""

    epochs: int = Field(0, ge=0, description="0 evaluates without retraining only (the seed's setting)")
    lr: float = Field(0.01, gt=0.0)
    batch_size: int = Field(128, ge=1)


class RelevanceStudyConfig(StrictModel):
    """``tuneprune relevance CONFIG.yaml``: accuracy and loss curves over pruning percentages."""

    name: str | None = Field(None, pattern=NAME_PATTERN, description="default: the config file name")
    experiment: ExperimentName = "tuneprune"
    train: RunConfig = Field(default_factory=RunConfig, description="trains the model when no checkpoint is given")
    relevance: RelevanceSettings = Field(default_factory=RelevanceSettings)
    percentages: list[Annotated[int, Field(ge=0, lt=100)]] = Field(
        default_factory=lambda: list(range(10, 100, 10)), min_length=1, description="whole percents: the MLflow steps"
    )
    rankings: list[Ranking] = Field(default_factory=lambda: list(get_args(Ranking)))
    deltas: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=lambda: [i / 10 for i in range(11)])
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)

    @field_validator("percentages", "deltas")
    @classmethod
    def _ascending(cls, v: list[float]) -> list[float]:
        return sorted(set(v))

    @field_validator("rankings")
    @classmethod
    def _rankings(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _some_curve(self) -> RelevanceStudyConfig:
        if not self.rankings and not self.deltas:
            raise ValueError("rankings and deltas are both empty: nothing to prune by")
        return self
