"""Sparsity schedules S_k: cubic (formulas §1.5), adaptive (formulas §3, §9) and constant.

A schedule is any object with the :class:`Schedule` methods; the :class:`Sparsifier
<tuneprune.sparsity.Sparsifier>` asks it for ``S_k`` before iteration ``k`` and tells it the
mask stability ``mu_k`` measured there, as the sparsifier and scheduler of
``torch.ao.pruning`` are split.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from tuneprune.sparsity.adaptive import AdaptiveScheduler
from tuneprune.sparsity.config import SparsityConfig, check_cubic_start


def cubic_sparsity(
    step: float, final_sparsity: float, start_step: float, end_step: float, initial_sparsity: float = 0.0
) -> float:
    """``S_k = S_f + (S_i - S_f) * (1 - (k - k0) / (k1 - k0))^3`` for ``k0 <= k < k1`` (formulas §1.5).

    ``S_i`` before ``k0``, ``S_f`` from ``k1`` on.
    """
    if step < start_step:
        return initial_sparsity
    if step >= end_step:
        return final_sparsity
    remaining = 1.0 - (step - start_step) / (end_step - start_step)
    return final_sparsity + (initial_sparsity - final_sparsity) * remaining**3


class Schedule(Protocol):
    """The sparsity ``S_k`` of each training iteration ``k``; ``state_dict``/``load_state_dict`` make it part of a
    checkpoint."""

    def sparsity_at(self, step: int) -> float | torch.Tensor:
        """``S_k`` for iteration ``step``: a float, or a 0-dim tensor when it depends on values that live on the
        device (the adaptive schedule on the accelerator path, formulas §10.6), read only where the host needs it."""

    def observe(self, step: int, stability: torch.Tensor) -> None:
        """Take the mean mask stability ``mu_k`` measured at iteration ``step``, a 0-dim tensor on the weights'
        device: a schedule that ignores it costs no host read."""

    @property
    def lam(self) -> float:
        """The adaptive scheduler's lambda (reported per epoch); 0 for the others."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class StepFunction:
    """Base of the schedules that are a function of the step alone: nothing to observe or restore."""

    lam = 0.0

    def observe(self, step: int, stability: torch.Tensor) -> None:
        """Ignored: the sparsity depends on the step only."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""


class ConstantSchedule(StepFunction):
    """The target from the first iteration on."""

    def __init__(self, final_sparsity: float) -> None:
        self.final_sparsity = final_sparsity

    def sparsity_at(self, step: int) -> float:
        return self.final_sparsity


class CubicSchedule(StepFunction):
    """Zhu & Gupta's cubic schedule from 0 at ``start_step`` (k0) to ``final_sparsity`` at ``end_step`` (k1), formulas §1.5."""

    def __init__(self, final_sparsity: float, start_step: float, end_step: float) -> None:
        check_cubic_start(start_step, end_step, "start_step", f"end_step = {end_step:g}")
        self.final_sparsity, self.start_step, self.end_step = final_sparsity, start_step, end_step

    def sparsity_at(self, step: int) -> float:
        return cubic_sparsity(step, self.final_sparsity, self.start_step, self.end_step)


class AdaptiveSchedule:
    """:class:`AdaptiveScheduler` after ``warmup_steps`` of cubic schedule from 0 to its initial sparsity (formulas §9).

    The stability measured at iteration k sets the sparsity of iteration k + 1; during the
    warm-up it is only recorded, so the first adaptive step compares with the last warm-up
    iteration. After the warm-up ``S_k`` is the scheduler's: a 0-dim tensor on the device
    of the stabilities on the accelerator path, never read there (formulas §10.6).
    """

    def __init__(self, scheduler: AdaptiveScheduler, warmup_steps: float = 0.0) -> None:
        self.scheduler = scheduler
        self.warmup_steps = warmup_steps

    def sparsity_at(self, step: int) -> float | torch.Tensor:
        if step < self.warmup_steps:
            return cubic_sparsity(step, self.scheduler.initial_sparsity, 0, self.warmup_steps)
        return self.scheduler.sparsity

    @property
    def lam(self) -> float:
        return self.scheduler.lam

    def observe(self, step: int, stability: torch.Tensor | float) -> None:
        if step + 1 < self.warmup_steps:
            self.scheduler.observe(stability)
        else:
            self.scheduler.step(stability)

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


def build_schedule(config: SparsityConfig, steps_per_epoch: int, epochs: int) -> Schedule:
    """The schedule ``config.scheduler`` describes (its adaptive constants resolved at config load)."""
    cfg = config.scheduler
    total_steps = steps_per_epoch * epochs
    if cfg.type == "constant":
        return ConstantSchedule(config.target)
    if cfg.type == "cubic":
        cfg.check_cubic_start(epochs)  # named as the config names it, before the schedule's steps
        return CubicSchedule(config.target, cfg.start_epoch * steps_per_epoch, cfg.end_fraction * total_steps)
    constants = {key: getattr(cfg, key) for key in "ABCD"}  # resolved at config load
    scheduler = AdaptiveScheduler(
        **constants, final_sparsity=config.target, epochs=epochs, initial_sparsity=cfg.initial_sparsity
    )
    return AdaptiveSchedule(scheduler, cfg.warmup_epochs * steps_per_epoch)
