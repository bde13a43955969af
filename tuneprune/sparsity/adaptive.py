"""The adaptive mask-stability scheduler (formulas §3, formulas §9) and its published presets."""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Any

from tuneprune.config import ConfigError, load_yaml

REFERENCE_EPOCHS = 160


class ModelFamily(StrEnum):
    """The model families whose preset constant D differs (formulas §3 table)."""

    RESNET = "resnet"
    DENSENET = "densenet"
    MOBILENET = "mobilenet"

    @classmethod
    def of(cls, model_name: str) -> "ModelFamily":
        """The family of a model by its name: MobileNet and DenseNet by name, every other model as ResNet."""
        for family in (cls.MOBILENET, cls.DENSENET):
            if family.value in model_name:
                return family
        return cls.RESNET


# A, B, C and D per model family of the published presets (formulas §3 table).
PRESETS: dict[str, dict[str, Any]] = {
    "lambda1": {"A": 0.5, "B": 0.80, "C": 20.0, "D": {"resnet": -0.010, "densenet": -0.010, "mobilenet": -0.007}},
    "lambda2": {"A": 0.3, "B": 0.91, "C": 75.0, "D": {"resnet": 0.000, "densenet": 0.000, "mobilenet": 0.003}},
}


def preset_constants(preset: str, model_family: str = ModelFamily.RESNET) -> dict[str, float]:
    """A, B, C, D of a published preset for ``model_family``, or read from a YAML file of A, B, C, D."""
    if preset in PRESETS:
        constants = dict(PRESETS[preset])
        by_family = constants["D"]
        if model_family not in by_family:
            raise ValueError(f"unknown model family {model_family!r}, allowed: {', '.join(by_family)}")
        constants["D"] = by_family[model_family]
        return constants
    path = Path(preset)
    if not path.is_file():
        allowed = " nor ".join(PRESETS)
        raise ConfigError(f"sparsity.scheduler.preset = {preset!r}: neither {allowed} nor a YAML file")
    data = load_yaml(path)
    try:
        return {key: float(data[key]) for key in "ABCD"}
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}: needs numbers A, B, C and D, got {data}") from None


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


class AdaptiveScheduler:
    """``S_{k+1} = min(S_f, S_k + l * lambda(S_k) * (mu_{k+1} - mu_k))`` if ``mu_{k+1} > mu_k``, else ``S_k`` (formulas §3).

    ``lambda(S) = max(0, A / (1 + exp(-C (B - S))) + D)`` and ``l = 160 / epochs``. It
    starts from ``initial_sparsity`` (formulas §9; never above ``final_sparsity``). Feed
    :meth:`step` the mean mask stability measured at each iteration; the first call only
    records the reference value.
    """

    def __init__(
        self, A: float, B: float, C: float, D: float, final_sparsity: float, epochs: int, initial_sparsity: float = 0.0
    ) -> None:
        self.A, self.B, self.C, self.D = float(A), float(B), float(C), float(D)
        self.final_sparsity = final_sparsity
        self.scale = REFERENCE_EPOCHS / epochs
        self.initial_sparsity = min(initial_sparsity, final_sparsity)
        self.sparsity = self.initial_sparsity
        self.previous_mu: float | None = None

    @classmethod
    def preset(
        cls,
        name: str,
        model_family: str = ModelFamily.RESNET,
        *,
        final_sparsity: float,
        epochs: int,
        initial_sparsity: float = 0.0,
    ) -> "AdaptiveScheduler":
        """A scheduler with the constants of ``lambda1``/``lambda2`` (D by ``model_family``) or of a YAML file."""
        constants = preset_constants(name, model_family)
        return cls(**constants, final_sparsity=final_sparsity, epochs=epochs, initial_sparsity=initial_sparsity)

    def lambda_at(self, sparsity: float) -> float:
        """``lambda(S) = A / (1 + exp(-C (B - S))) + D``, clipped at 0."""
        return max(0.0, self.A * _sigmoid(self.C * (self.B - sparsity)) + self.D)

    @property
    def lam(self) -> float:
        """lambda at the current sparsity."""
        return self.lambda_at(self.sparsity)

    def observe(self, mu: float) -> None:
        """Record ``mu`` as the reference of the next step without changing the sparsity."""
        self.previous_mu = float(mu)

    def step(self, mu: float) -> float:
        """Take the stability measured at this iteration; return the sparsity of the next one."""
        if self.previous_mu is not None and mu > self.previous_mu:
            increment = self.scale * self.lam * (mu - self.previous_mu)
            self.sparsity = min(self.final_sparsity, self.sparsity + increment)
        self.observe(mu)
        return self.sparsity

    def state_dict(self) -> dict[str, float | None]:
        return {"sparsity": self.sparsity, "previous_mu": self.previous_mu}

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        self.sparsity = float(state["sparsity"])
        self.previous_mu = state["previous_mu"]
