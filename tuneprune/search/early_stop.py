"""Early stopping of pack members: asynchronous successive halving (ASHA), one decision per member and epoch.

Ray Tune's ``ASHAScheduler`` stops whole Ray trials; a pack is one Ray trial holding
several Optuna trials, so its members ask this rule instead (formulas §10.7). It is
Ray's rule with one bracket: rungs at ``grace_period * reduction_factor^k`` epochs up to
the trials' epochs; a member reaching a rung is recorded there, and stopped when its
objective is below the ``(1 - 1/reduction_factor)`` quantile of the values recorded
there before it. One :class:`AshaRule` serves every pack of a search from a named Ray
actor (:func:`start_stopper`), so members of different packs are compared, as trials are.
"""

from __future__ import annotations

import math

import numpy as np


class AshaRule:
    """Rung bookkeeping of ASHA for members keyed by trial key; ``mode`` ``max`` or ``min``."""

    def __init__(self, grace_period: int, reduction_factor: float, max_t: int, mode: str) -> None:
        count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
        self.rf = reduction_factor
        self.sign = 1.0 if mode == "max" else -1.0
        self.rungs: list[tuple[float, dict[str, float]]] = [
            (grace_period * reduction_factor**k, {}) for k in reversed(range(count))
        ]

    def should_stop(self, key: str, epoch: int, value: float | None) -> bool:
        """Record member ``key`` at the highest rung ``epoch`` reaches (once); True when it falls below the cutoff."""
        if value is None or not math.isfinite(value):
            return False
        reward = self.sign * value
        for milestone, recorded in self.rungs:
            if epoch < milestone or key in recorded:
                continue
            cutoff = np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100) if recorded else None
            recorded[key] = reward
            return cutoff is not None and reward < cutoff
        return False


def start_stopper(name: str, grace_period: int, reduction_factor: float, max_t: int, mode: str) -> object:
    """An :class:`AshaRule` in a Ray actor called ``name`` (it lives as long as the driver's job)."""
    import ray

    actor = ray.remote(num_cpus=0)(AshaRule).options(name=name, get_if_exists=True)
    return actor.remote(min(grace_period, max_t), reduction_factor, max_t, mode)
