"""The adaptive mask-stability scheduler (formulas §3, formulas §9) and its published presets."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Any

import torch

from tuneprune.shared.config import ConfigError, load_numbers
from tuneprune.sparsity.dispatch import Number, device_scalar, on_numpy, select

REFERENCE_EPOCHS = 160
# Where the adaptive schedule starts unless told: above 0, which it cannot leave (formulas §9).
DEFAULT_INITIAL_SPARSITY = 0.5


class ModelFamily(str, Enum):
    """The model families whose preset constant D differs (formulas §3 table).

    ``str`` and ``Enum`` rather than ``enum.StrEnum``, which Python 3.10 lacks; ``str()``
    and f-strings give the value, as ``StrEnum`` does.
    """

    RESNET = "resnet"
    DENSENET = "densenet"
    MOBILENET = "mobilenet"

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def of(cls, model_name: str) -> ModelFamily:
        """The family of a model by its name: MobileNet and DenseNet by name, every other model as ResNet."""
        return next((family for family in (cls.MOBILENET, cls.DENSENET) if family.value in model_name), cls.RESNET)


# A, B, C and D per model family of the published presets (formulas §3 table).
PRESETS: dict[str, dict[str, Any]] = {
    "lambda1": {"A": 0.5, "B": 0.80, "C": 20.0, "D": {"resnet": -0.010, "densenet": -0.010, "mobilenet": -0.007}},
    "lambda2": {"A": 0.3, "B": 0.91, "C": 75.0, "D": {"resnet": 0.000, "densenet": 0.000, "mobilenet": 0.003}},
}


def preset_constants(preset: str, model_family: str = ModelFamily.RESNET) -> dict[str, float]:
    """A, B, C, D of a published preset for ``model_family``, or read from a YAML file of A, B, C, D."""
    if preset in PRESETS:
        by_family = PRESETS[preset]["D"]
        if model_family not in by_family:
            raise ValueError(f"unknown model family {model_family!r}, allowed: {', '.join(by_family)}")
        return {**PRESETS[preset], "D": by_family[model_family]}
    path = Path(preset)
    if not path.is_file():
        raise ConfigError(f"sparsity.scheduler.preset = {preset!r}: neither {' nor '.join(PRESETS)} nor a YAML file")
    return load_numbers(path, "ABCD", "an adaptive preset")


def _sigmoid(x: Number) -> Number:
    """``1 / (1 + exp(-x))`` without overflow: ``e = exp(-|x|)``, then ``1 / (1 + e)`` for ``x >= 0``, else ``e / (1 + e)``."""
    e = torch.exp(-x.abs()) if isinstance(x, torch.Tensor) else math.exp(-abs(x))
    return select(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _measured(mu: Number) -> Number:
    """A stability as the update takes it: a float, or a float64 tensor on the accelerator path (not read back)."""
    if isinstance(mu, torch.Tensor) and not on_numpy(mu):
        return mu.detach().to(torch.float64, copy=True)
    return float(mu)  # a number, or a tensor in CPU memory: no device sync


def _alongside(value: Number, mu: Number) -> Number:
    """``value`` in the form of ``mu`` (a float64 tensor on its device, or a float): one update never mixes the two,
    so a restored checkpoint (floats) continues on the device exactly as an uninterrupted run."""
    return device_scalar(value, mu.device) if isinstance(mu, torch.Tensor) else float(value)


class AdaptiveScheduler:
    """``S_{k+1} = min(S_f, S_k + l * lambda(S_k) * (mu_{k+1} - mu_k))`` if ``mu_{k+1} > mu_k``, else ``S_k`` (formulas §3).

    ``lambda(S) = max(0, A / (1 + exp(-C (B - S))) + D)`` and ``l = 160 / epochs``. It
    starts from ``initial_sparsity`` (formulas §9: above 0, which it cannot leave; never
    above ``final_sparsity``). Feed :meth:`step` the mean mask stability measured at each
    iteration; the first call only records the reference value.

    On the CPU path the update runs in Python floats; a stability tensor on the accelerator
    path is never read: the same formulas run as float64 tensor operations on its device, and
    ``sparsity`` becomes a 0-dim tensor there (formulas §10.6).
    """

    def __init__(
        self,
        A: float,
        B: float,
        C: float,
        D: float,
        final_sparsity: float,
        epochs: int,
        initial_sparsity: float = DEFAULT_INITIAL_SPARSITY,
    ) -> None:
        if not initial_sparsity > 0:
            raise ValueError(
                f"initial_sparsity = {initial_sparsity}: the adaptive schedule cannot leave S = 0 "
                "(formulas §9), allowed: above 0"
            )
        self.A, self.B, self.C, self.D = float(A), float(B), float(C), float(D)
        self.final_sparsity = final_sparsity
        self.scale = REFERENCE_EPOCHS / epochs
        self.initial_sparsity = min(initial_sparsity, final_sparsity)
        self.sparsity: Number = self.initial_sparsity
        self.previous_mu: Number | None = None

    @classmethod
    def preset(
        cls,
        name: str,
        model_family: str = ModelFamily.RESNET,
        *,
        final_sparsity: float,
        epochs: int,
        initial_sparsity: float = DEFAULT_INITIAL_SPARSITY,
    ) -> AdaptiveScheduler:
        """A scheduler with the constants of ``lambda1``/``lambda2`` (D by ``model_family``) or of a YAML file."""
        constants = preset_constants(name, model_family)
        return cls(**constants, final_sparsity=final_sparsity, epochs=epochs, initial_sparsity=initial_sparsity)

    def lambda_at(self, sparsity: Number) -> Number:
        """``lambda(S) = A / (1 + exp(-C (B - S))) + D``, clipped at 0 (a tensor for a tensor ``S``)."""
        lam = self.A * _sigmoid(self.C * (self.B - sparsity)) + self.D
        return select(lam > 0, lam, 0.0)

    @property
    def lam(self) -> float:
        """lambda at the current sparsity, read as a float."""
        return float(self.lambda_at(self.sparsity))

    def observe(self, mu: Number) -> None:
        """Record ``mu`` as the reference of the next step without changing the sparsity."""
        self.previous_mu = _measured(mu)

    def step(self, mu: Number) -> Number:
        """Take the stability measured at this iteration; return the sparsity of the next one."""
        mu = _measured(mu)
        if self.previous_mu is not None:
            sparsity, previous = _alongside(self.sparsity, mu), _alongside(self.previous_mu, mu)
            increment = self.scale * self.lambda_at(sparsity) * (mu - previous)
            raised = sparsity + increment
            capped = select(raised < self.final_sparsity, raised, self.final_sparsity)
            self.sparsity = select(mu > previous, capped, sparsity)
        self.previous_mu = mu
        return self.sparsity

    def state_dict(self) -> dict[str, float | None]:
        """The sparsity and the reference stability as floats (read back from the device, if there)."""
        previous = None if self.previous_mu is None else float(self.previous_mu)
        return {"sparsity": float(self.sparsity), "previous_mu": previous}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sparsity = float(state["sparsity"])
        self.previous_mu = None if state["previous_mu"] is None else float(state["previous_mu"])
