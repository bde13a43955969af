"""One generation on Ray: every individual a task, failures recorded with the worst objective values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tuneprune.evolution.problem import decode
from tuneprune.evolution.worker import EvalSettings, Individual, evaluate_individual
from tuneprune.stochastic import derive_seed

FAILED_RESULT = {"accuracy": 0.0, "sparsity": 0.0, "pruned_layers_sparsity": 0.0, "accuracies": []}


def individuals(X: np.ndarray, generation: int, seed: int) -> list[Individual]:
    """Decode a population's decision vectors; noise seeds from (seed, generation, index)."""
    return [Individual(generation, i, *decode(x), seed=derive_seed(seed, generation, i)) for i, x in enumerate(X)]


def remote_evaluator(cpus: float, gpus: float, max_retries: int) -> Any:
    """:func:`evaluate_individual` as a Ray task with the space's resources, retried on any exception."""
    import ray

    return ray.remote(evaluate_individual).options(
        num_cpus=cpus, num_gpus=gpus, max_retries=max_retries, retry_exceptions=True
    )


def _first_line(err: BaseException) -> str:
    """The innermost error's message: Ray wraps the worker's exception in a long traceback."""
    cause = getattr(err, "cause", None) or err
    return f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"[:500]


def record(individual: Individual, rate_names: Sequence[str], result: dict[str, Any], error: str | None) -> dict[str, Any]:
    """A flat row of the population table."""
    return {
        "generation": individual.generation,
        "index": individual.index,
        "seed": individual.seed,
        "sigma": individual.sigma,
        **dict(zip(rate_names, individual.rates)),
        "accuracy": result["accuracy"],
        "sparsity": result["sparsity"],
        "pruned_layers_sparsity": result["pruned_layers_sparsity"],
        "accuracies": result["accuracies"],
        "status": "failed" if error else "ok",
        "error": error or "",
    }


def evaluate_all(
    evaluator: Any, payload_ref: Any, val_ref: Any, batch: Sequence[Individual], settings: EvalSettings, rate_names: Sequence[str]
) -> list[dict[str, Any]]:
    """Run ``batch`` in parallel; an individual still failing after its retries is recorded failed."""
    import ray
    from ray.exceptions import RayError

    refs = [evaluator.remote(payload_ref, val_ref, individual, settings) for individual in batch]
    rows = []
    for individual, ref in zip(batch, refs):
        try:
            rows.append(record(individual, rate_names, ray.get(ref), None))
        except RayError as err:
            rows.append(record(individual, rate_names, FAILED_RESULT, _first_line(err)))
    return rows
