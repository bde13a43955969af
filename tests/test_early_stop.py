"""The early stopping of pack members is Ray Tune's ASHA rule, decision for decision."""

from __future__ import annotations

import random

import pytest
from ray.tune.schedulers import TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket

from tuneprune.search.early_stop import AshaRule


class _Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


@pytest.mark.parametrize(("grace", "eta", "max_t", "mode"), [(1, 2, 4, "max"), (1, 3, 9, "min"), (2, 2, 8, "max")])
def test_member_decisions_equal_rays_asha(grace, eta, max_t, mode):
    rng = random.Random(grace * 100 + max_t)
    ours = AshaRule(grace, eta, max_t, mode)
    ray_bracket = _Bracket(grace, max_t, eta, 0)
    sign = 1 if mode == "max" else -1
    running = {f"t{i}": 0 for i in range(12)}
    stops = 0
    while running:  # members report in random interleavings, as packs do
        key = rng.choice(sorted(running))
        running[key] += 1
        epoch, value = running[key], rng.random()
        stop = ours.should_stop(key, epoch, value)
        assert stop == (ray_bracket.on_result(_Trial(key), epoch, sign * value) == TrialScheduler.STOP)
        stops += stop
        if stop or epoch == max_t:
            del running[key]
    assert stops > 0


def test_a_missing_or_nan_value_never_stops_a_member():
    rule = AshaRule(1, 2, 4, "max")
    assert not rule.should_stop("a", 1, 0.9)
    assert not rule.should_stop("b", 1, None) and not rule.should_stop("c", 1, float("nan"))
    assert rule.should_stop("d", 1, 0.1)
