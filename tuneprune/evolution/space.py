"""The evolution space (``search_spaces/evolve_*.yaml``): dense model, variables, algorithm, budgets (formulas §5, formulas §8)."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from tuneprune.search.space import ResourcesConfig
from tuneprune.shared.config import MACHINE_FIELDS, NAME_PATTERN, ExperimentName, StrictModel, trained_fields
from tuneprune.stochastic.config import TargetConfig
from tuneprune.training.config import RunConfig

Unit = Annotated[float, Field(ge=0.0, le=1.0)]

# The fields that decide an evolution's results; a resume may change only algorithm.generations and MACHINE_FIELDS of
# train (where this machine keeps the data and what it runs on).
RESULT_FIELDS = {"train", "algorithm", "variables", "samples", "target", "reference_point"}
# What a resume may change, for its refusal to name.
RESUMABLE = [
    "algorithm.generations",
    *(f"train.{f}" for f in MACHINE_FIELDS if f.split(".")[0] in RunConfig.model_fields),
]


class AlgorithmConfig(StrictModel):
    """The pymoo algorithm; its random state is seeded with ``seed``."""

    type: Literal["nsga2", "nsga3", "smsemoa"] = "nsga2"
    pop_size: int = Field(8, ge=2)
    generations: int = Field(10, ge=1)
    seed: int = Field(0, ge=0, description="seeds pymoo and, with (generation, index), every individual's noise")


class Interval(StrictModel):
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Interval:
        if not self.low < self.high:
            raise ValueError(f"low = {self.low} must be below high = {self.high}")
        return self


class SigmaInterval(Interval):
    """Noise sigma bounds; searched as log10(sigma) (formulas §5)."""

    low: float = Field(1e-4, gt=0.0)
    high: float = Field(1e-2, gt=0.0)


class RateInterval(Interval):
    """Pruning-rate bounds in [0, 1)."""

    low: float = Field(0.01, ge=0.0, lt=1.0)
    high: float = Field(0.99, gt=0.0, lt=1.0)


class VariablesConfig(StrictModel):
    """Decision variables: log10(sigma), then one rate, or one rate per group of layers.

    ``groups`` maps a group name to module-name prefixes (e.g. ``layer1``); every pruned
    layer must fall into exactly one group. Empty: one global rate.
    """

    sigma: SigmaInterval = Field(default_factory=SigmaInterval)
    rate: RateInterval = Field(default_factory=RateInterval)
    groups: dict[str, list[str]] = Field(default_factory=dict)

    @property
    def rate_names(self) -> list[str]:
        return [f"rate.{name}" for name in self.groups] or ["rate"]


class EvolveResources(ResourcesConfig):
    """Per Ray task; ``pack`` individuals of a generation share a task, their samples evaluated stacked."""

    pack: int = Field(1, ge=1, description="individuals of a generation per Ray task (1: one task each)")


class EvolutionSpace(StrictModel):
    """A validated evolution of Stochastic Pruning's (sigma, rate) on the accuracy-sparsity plane."""

    name: str | None = Field(None, pattern=NAME_PATTERN)
    experiment: ExperimentName = "tuneprune"
    train: RunConfig = Field(default_factory=RunConfig, description="the dense model, trained first unless given")
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    variables: VariablesConfig = Field(default_factory=VariablesConfig)
    samples: int = Field(3, ge=1, description="noisy samples k per individual; the objective is their median accuracy")
    target: TargetConfig = Field(default_factory=TargetConfig)
    reference_point: tuple[Unit, Unit] = Field((0.0, 0.0), description="(accuracy, sparsity) for the hypervolume")
    resources: EvolveResources = Field(default_factory=EvolveResources, description="per Ray task")
    max_retries: int = Field(2, ge=0, description="Ray retries of a failing evaluation before it is recorded failed")
    fail_individuals: list[tuple[int, int]] = Field(
        default_factory=list,
        description="testing aid: (generation, index) pairs whose evaluation raises; generation 0: the deterministic "
        "comparison of the final front's index-th point",
    )

    def fingerprint(self, *, whole_train: bool = False) -> str:
        """A hash of what decides the results, less the number of generations and the train section's
        :data:`~tuneprune.shared.config.MACHINE_FIELDS`: what a resume must keep, on any machine. ``whole_train``: with
        those fields, the fingerprint of the evolutions saved before 2026-12-05."""
        data: dict[str, Any] = self.model_dump(mode="json", include=RESULT_FIELDS)
        data["algorithm"].pop("generations")
        if not whole_train:
            data["train"] = trained_fields(data["train"])
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
