"""Which trial of a grid point stands in for the default configuration: the one closest to the space's base (formulas §8)."""

from __future__ import annotations

import math
from typing import Any

from tuneprune.search.space import CategoricalParam, Param
from tuneprune.tracking.runs import flatten


def param_distance(value: Any, base: Any, param: Param) -> float:
    """0 for equal values; a numeric difference in units of the searched range (log range for log params); else 1."""
    if isinstance(param, CategoricalParam) or not isinstance(base, (int, float)) or isinstance(base, bool):
        return 0.0 if value == base else 1.0
    scale = math.log if param.log else float
    width = scale(param.high) - scale(param.low)
    return abs(scale(value) - scale(base)) / width if width > 0 else 0.0


def base_values(base_config: dict[str, Any], params: dict[str, Param]) -> dict[str, Any]:
    """The base run config's value of every searched path (None where the config leaves it unset)."""
    flat = flatten(base_config)
    return {path: flat.get(path) for path in params}


def distance_to_base(values: dict[str, Any], base: dict[str, Any], params: dict[str, Param]) -> float:
    """The summed per-parameter distance of a trial's searched values from the base values."""
    return sum(param_distance(values[p], base[p], param) for p, param in params.items())
