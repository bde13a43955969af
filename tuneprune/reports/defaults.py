"""Which trial of a grid point stands in for the default configuration: the one closest to the space's base (formulas §8)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tuneprune.reports.trials import SearchData, Trial
from tuneprune.search.space import CategoricalParam, Param
from tuneprune.tracking.runs import flatten


def param_distance(value: Any, base: Any, param: Param) -> float:
    """0 for equal values; a numeric difference in units of the searched range (log range for log params); else 1."""
    if isinstance(param, CategoricalParam) or not isinstance(base, (int, float)) or isinstance(base, bool):
        return 0.0 if value == base else 1.0
    scale = math.log if param.log else float
    width = scale(param.high) - scale(param.low)
    return abs(scale(value) - scale(base)) / width if width > 0 else 0.0


def closest_to_default(data: SearchData, trials: Sequence[Trial], grid: dict[str, Any]) -> tuple[Trial, float]:
    """The complete trial of ``grid`` whose searched values are closest to the base config's, and its distance: the
    summed :func:`param_distance` of each searched path from the base run config's value (None where it is unset)."""
    params, base = data.space.params, flatten(data.space.resolve(grid, {}).model_dump(mode="json"))
    distances = [
        (t, sum(param_distance(t.params[p], base.get(p), param) for p, param in params.items())) for t in trials
    ]
    return min(distances, key=lambda pair: pair[1])
