"""A study (``tuneprune study STUDY.yaml``, docs/studies.md): methods x targets x seeds (x models) as a grid search.

Every cell (method, model, target, seed) is one trial of a grid search through the search driver
(:mod:`tuneprune.search.runner`): nothing sampled, early stopping off. ``baseline`` is the method the others are
tested against at significance ``level`` (formulas §11).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tuneprune.search.space import METHOD, ResourcesConfig, load_space
from tuneprune.shared.config import NAME_PATTERN, ExperimentName, StrictModel, apply_overrides, load_yaml, validate

TARGET = "sparsity.target"
MODEL = "model"
SEED = "seed"
METRIC = "test_acc"  # what a study's table compares; val_acc is the trials' objective
STUDY_ARTIFACT = "study.yaml"  # the study on its search's parent run: what tells a study from a search with methods


class StudyConfig(StrictModel):
    """A validated study document; see docs/studies.md."""

    name: str | None = Field(None, pattern=NAME_PATTERN)
    experiment: ExperimentName = "tuneprune"
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict, description="the run config every cell starts from")
    methods: dict[str, dict[str, Any]] = Field(min_length=1, description="name -> overlay of dotted run-config keys")
    baseline: str | None = Field(None, description="the method the others are tested against (default: the first)")
    targets: list[float] = Field(min_length=1, description="target sparsities, each in [0, 1)")
    seeds: list[int] = Field(min_length=1, description="seeds, each >= 0")
    models: list[str] | None = Field(None, min_length=1, description="models (default: base.model)")
    published: dict[str, dict[Any, Any]] = Field(
        default_factory=dict,
        description="METHOD -> TARGET -> accuracy in % (with models: MODEL -> METHOD -> TARGET -> %)",
    )
    level: float = Field(0.05, gt=0.0, lt=0.5, description="significance level of Welch's t-test against the baseline")
    max_concurrent: int = Field(2, ge=1)
    max_failures: int = Field(2, ge=0)
    resources: ResourcesConfig = ResourcesConfig()

    @field_validator("targets", "seeds", "models")
    @classmethod
    def _sweeps(cls, v: list[Any] | None, info: ValidationInfo) -> list[Any] | None:
        """Targets in [0, 1), seeds >= 0, and no target, seed or model listed twice."""
        if info.field_name == "targets":
            for t in v or []:
                if not (0.0 <= t < 1.0):
                    raise ValueError(f"target {t} outside [0, 1)")
        if info.field_name == "seeds" and any(s < 0 for s in v or []):
            raise ValueError("seeds must be >= 0")
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"a {str(info.field_name)[:-1]} is listed twice")
        return v

    @model_validator(mode="after")
    def _references(self) -> StudyConfig:
        if self.baseline is not None and self.baseline not in self.methods:
            raise ValueError(f"baseline {self.baseline!r}: not a method, allowed: {', '.join(self.methods)}")
        for (model, method, target), value in self.published_cells().items():
            if method not in self.methods:
                raise ValueError(f"published: unknown method {method!r}, allowed: {', '.join(self.methods)}")
            if target not in self.targets:
                raise ValueError(f"published.{method}: target {target} is not one of targets")
            if self.models and model not in self.models:
                raise ValueError(f"published: unknown model {model!r}, allowed: {', '.join(self.models)}")
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0.0 <= value <= 100.0):
                raise ValueError(f"published.{method}.{target} = {value!r}: an accuracy in % (0 to 100)")
        return self

    @property
    def baseline_method(self) -> str:
        return self.baseline or next(iter(self.methods))

    def published_cells(self) -> dict[tuple[str | None, str, float], float]:
        """``(model or None, method, target) -> accuracy in %``, from either form of ``published``."""
        if not self.models:
            blocks: dict[str | None, dict[str, Any]] = {None: self.published}
        else:
            blocks = dict(self.published.items())  # keys typed str | None, as in the other branch
            for model, block in blocks.items():
                if not isinstance(block, dict) or not all(isinstance(v, dict) for v in block.values()):
                    raise ValueError(f"published.{model}: with models, published is MODEL -> METHOD -> TARGET -> %")
        cells = {}
        for model, block in blocks.items():
            for method, row in block.items():
                if not isinstance(row, dict):
                    raise ValueError(f"published.{method}: expected TARGET -> accuracy in %")
                for target, value in row.items():
                    try:
                        cells[(model, method, float(target))] = value
                    except (TypeError, ValueError):
                        raise ValueError(f"published.{method}: target {target!r} is not a number") from None
        return cells

    def space_document(self, name: str) -> dict[str, Any]:
        """The grid search that runs the study: one trial per (method, model, target, seed), nothing sampled."""
        base = {**self.base, "sparsity": dict(self.base.get("sparsity") or {})}
        grid: dict[str, list[Any]] = {METHOD: list(self.methods)}
        if self.models:
            grid[MODEL] = list(self.models)
        grid[TARGET] = list(self.targets)
        grid[SEED] = list(self.seeds)
        return {
            "name": name,
            "experiment": self.experiment,
            "base": base,
            "methods": self.methods,
            "grid": grid,
            "objectives": {"val_acc": "max"},
            "sampler": {"type": "random", "seed": 0},
            "num_samples": 1,
            "max_concurrent": self.max_concurrent,
            "early_stopping": {"type": "none"},
            "resources": self.resources.model_dump(),
            "max_failures": self.max_failures,
        }


def load_study(
    path: str | Path, overrides: list[str] | None = None, name: str | None = None
) -> tuple[StudyConfig, dict[str, Any]]:
    """The validated study and the space document of its grid search (every cell's run config checked)."""
    study = validate(StudyConfig, apply_overrides(load_yaml(path), overrides))
    document = study.space_document(name or study.name or Path(path).stem)
    load_space(document)
    return study, document
