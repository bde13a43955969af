"""The best alpha per target of an alpha search (formulas §2): ties go to the lowest trial key, whatever the order."""

from __future__ import annotations

import pytest

from tuneprune.reports.alpha import AlphaPoint, best_alpha_points


@pytest.mark.parametrize("direction", ["max", "min"])
def test_a_tie_for_the_best_alpha_goes_to_the_lowest_trial_key(direction):
    """docs/reports.md: of equal scores the trial of the lower key wins (g0-999 before g0-1000, not by text), however
    the summary lists them (a claimed orphan queued again is listed after the trials asked meanwhile)."""
    tied = [("g0-1000", 0.3), ("g0-999", 0.2), ("g0-1001", 0.1)]
    worse = 0.5 if direction == "max" else 0.95
    points = [AlphaPoint("s", key, "model=m", 0.95, alpha, 0.9, 0.95) for key, alpha in tied]
    points.append(AlphaPoint("s", "g0-000", "model=m", 0.95, 0.4, worse, 0.95))
    for listed in (points, points[::-1]):
        (best,) = best_alpha_points({"objectives": {"val_acc": direction}}, listed)
        assert (best.trial, best.alpha) == ("g0-999", 0.2)
