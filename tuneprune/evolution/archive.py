"""The archive of every evaluated individual: its Pareto front and hypervolume (pymoo NDS and HV)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from tuneprune.evolution.problem import objective_values


def objective_matrix(rows: Sequence[dict[str, Any]]) -> np.ndarray:
    return np.array([objective_values(r["accuracy"], r["sparsity"]) for r in rows], dtype=float).reshape(-1, 2)


def pareto_front(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The non-dominated successful rows, one per objective point, by increasing sparsity."""
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return []
    front = [ok[i] for i in NonDominatedSorting().do(objective_matrix(ok), only_non_dominated_front=True)]
    unique = {(r["accuracy"], r["sparsity"]): r for r in reversed(front)}  # the first evaluated wins
    return sorted(unique.values(), key=lambda r: (r["sparsity"], -r["accuracy"]))


def hypervolume(front: Sequence[dict[str, Any]], reference: Sequence[float]) -> float:
    """Hypervolume of ``front`` against ``reference`` = (accuracy, sparsity), in the maximised plane."""
    if not front:
        return 0.0
    return float(HV(ref_point=np.array(objective_values(*reference), dtype=float))(objective_matrix(front)))
