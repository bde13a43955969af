"""Sparsity schedules S_k: cubic (SPEC 1.5), adaptive (SPEC 3, 9) and constant."""

from __future__ import annotations

from typing import Any

from tuneprune.sparsity.adaptive import AdaptiveScheduler, preset_constants
from tuneprune.sparsity.config import SparsityConfig


def cubic_sparsity(
    step: float, final_sparsity: float, start_step: float, end_step: float, initial_sparsity: float = 0.0
) -> float:
    """``S_k = S_f + (S_i - S_f) * (1 - (k - k0) / (k1 - k0))^3`` for ``k0 <= k < k1`` (SPEC 1.5).

    ``S_i`` before ``k0``, ``S_f`` from ``k1`` on.
    """
    if step < start_step:
        return initial_sparsity
    if step >= end_step:
        return final_sparsity
    remaining = 1.0 - (step - start_step) / (end_step - start_step)
    return final_sparsity + (initial_sparsity - final_sparsity) * remaining**3


class Schedule:
    """The sparsity of each training iteration; schedules driven by mask stability set ``needs_stability``."""

    needs_stability = False

    def sparsity_at(self, step: int) -> float:
        raise NotImplementedError

    @property
    def lam(self) -> float:
        """The adaptive scheduler's lambda; 0 for the others."""
        return 0.0

    def observe(self, step: int, mu: float) -> None:
        """Take the mean mask stability measured at iteration ``step``."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore for a schedule that is a function of the step."""


class ConstantSchedule(Schedule):
    """The target from the first iteration on."""

    def __init__(self, final_sparsity: float) -> None:
        self.final_sparsity = final_sparsity

    def sparsity_at(self, step: int) -> float:
        return self.final_sparsity


class CubicSchedule(Schedule):
    """Zhu & Gupta's cubic schedule from ``start_step`` (k0) to ``end_step`` (k1), SPEC 1.5."""

    def __init__(
        self, final_sparsity: float, start_step: float, end_step: float, initial_sparsity: float = 0.0
    ) -> None:
        self.final_sparsity, self.initial_sparsity = final_sparsity, initial_sparsity
        self.start_step, self.end_step = start_step, end_step

    def sparsity_at(self, step: int) -> float:
        return cubic_sparsity(step, self.final_sparsity, self.start_step, self.end_step, self.initial_sparsity)


class AdaptiveSchedule(Schedule):
    """:class:`AdaptiveScheduler` after ``warmup_steps`` of cubic schedule from 0 to its initial sparsity (SPEC 9).

    The stability measured at iteration k sets the sparsity of iteration k + 1; during the
    warm-up it is only recorded, so the first adaptive step compares with the last warm-up
    iteration.
    """

    needs_stability = True

    def __init__(self, scheduler: AdaptiveScheduler, warmup_steps: float = 0.0) -> None:
        self.scheduler = scheduler
        self.warmup_steps = warmup_steps

    def sparsity_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return cubic_sparsity(step, self.scheduler.initial_sparsity, 0, self.warmup_steps)
        return self.scheduler.sparsity

    @property
    def lam(self) -> float:
        return self.scheduler.lam

    def observe(self, step: int, mu: float) -> None:
        if step + 1 < self.warmup_steps:
            self.scheduler.observe(mu)
        else:
            self.scheduler.step(mu)

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


def build_schedule(config: SparsityConfig, steps_per_epoch: int, epochs: int, model_family: str = "resnet") -> Schedule:
    """The schedule ``config.scheduler`` describes; adaptive constants given explicitly override the preset's."""
    cfg = config.scheduler
    total_steps = steps_per_epoch * epochs
    if cfg.type == "constant":
        return ConstantSchedule(config.target)
    if cfg.type == "cubic":
        return CubicSchedule(config.target, cfg.start_epoch * steps_per_epoch, cfg.end_fraction * total_steps)
    constants = preset_constants(cfg.preset, model_family) if cfg.preset is not None else {}
    constants.update({key: getattr(cfg, key) for key in "ABCD" if getattr(cfg, key) is not None})
    scheduler = AdaptiveScheduler(
        **constants, final_sparsity=config.target, epochs=epochs, initial_sparsity=cfg.initial_sparsity
    )
    return AdaptiveSchedule(scheduler, cfg.warmup_epochs * steps_per_epoch)
