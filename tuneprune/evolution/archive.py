"""The archive of every evaluated individual: its Pareto front and hypervolume (pymoo NDS and HV)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pymoo.indicators.hv import HV

from tuneprune.evolution.problem import objective_values
from tuneprune.shared.pareto import Plane, front_indices

FRONT_PLANE = Plane("sparsity", "accuracy")


def objective_matrix(rows: Sequence[dict[str, Any]]) -> np.ndarray:
    return np.array([objective_values(r["accuracy"], r["sparsity"]) for r in rows], dtype=float).reshape(-1, 2)


def pareto_front(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The non-dominated successful rows by increasing sparsity, ties kept (the rule of :mod:`tuneprune.shared.pareto`)."""
    ok = [r for r in rows if r["status"] == "ok"]
    points = np.array([[r["sparsity"], r["accuracy"]] for r in ok], dtype=float).reshape(-1, 2)
    return [ok[i] for i in front_indices(points, FRONT_PLANE)]


def front_hypervolume(front: Sequence[dict[str, Any]], reference: Sequence[float]) -> float:
    """Hypervolume of ``front`` against ``reference`` = (accuracy, sparsity), in the maximised plane."""
    if not front:
        return 0.0
    return float(HV(ref_point=np.array(objective_values(*reference), dtype=float))(objective_matrix(front)))
