"""One generation on Ray: up to ``resources.pack`` individuals a task, failures recorded with the worst objective values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuneprune.evolution.problem import decode
from tuneprune.evolution.space import EvolveResources
from tuneprune.evolution.worker import EvalSettings, Individual, evaluate_individual, evaluate_pack
from tuneprune.stochastic import derive_seed

FAILED_RESULT = {"accuracy": 0.0, "sparsity": 0.0, "pruned_layers_sparsity": 0.0, "accuracies": []}


def individuals(X: np.ndarray, generation: int, seed: int) -> list[Individual]:
    """Decode a population's decision vectors; noise seeds from (seed, generation, index)."""
    return [Individual(generation, i, *decode(x), seed=derive_seed(seed, generation, i)) for i, x in enumerate(X)]


@dataclass(frozen=True)
class Evaluator:
    """A generation's Ray tasks: ``solo`` scores one individual, ``packed`` a list of up to ``pack`` of them, both
    on the dense model and validation split that ``payload_ref`` and ``val_ref`` hold in the object store."""

    solo: Any
    packed: Any
    pack: int
    payload_ref: Any
    val_ref: Any


def remote_evaluator(resources: EvolveResources, max_retries: int, payload_ref: Any, val_ref: Any) -> Evaluator:
    """:func:`evaluate_individual` as a Ray task with the space's resources, retried on any exception, and
    :func:`~tuneprune.evolution.worker.evaluate_pack` with the same resources and no retries (see :func:`evaluate_all`)."""
    import ray

    options = {"num_cpus": resources.cpu, "num_gpus": resources.gpu}
    return Evaluator(
        ray.remote(evaluate_individual).options(**options, max_retries=max_retries, retry_exceptions=True),
        ray.remote(evaluate_pack).options(**options, max_retries=0),
        resources.pack, payload_ref, val_ref,
    )  # fmt: skip


def _first_line(err: BaseException) -> str:
    """The innermost error's message: Ray wraps the worker's exception in a long traceback."""
    cause = getattr(err, "cause", None) or err
    return f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"[:500]


def population_row(
    individual: Individual, rate_names: Sequence[str], result: dict[str, Any], error: str | None
) -> dict[str, Any]:
    """A flat row of the population table."""
    return {
        "generation": individual.generation,
        "index": individual.index,
        "seed": individual.seed,
        "sigma": individual.sigma,
        **dict(zip(rate_names, individual.rates, strict=True)),
        # accuracy, sparsity, pruned_layers_sparsity, accuracies: the result's columns, as FAILED_RESULT orders them
        **{column: result[column] for column in FAILED_RESULT},
        "status": "failed" if error else "ok",
        "error": error or "",
    }


def evaluate_all(
    evaluator: Evaluator, batch: Sequence[Individual], settings: EvalSettings, rate_names: Sequence[str]
) -> list[dict[str, Any]]:
    """Run ``batch`` in parallel, ``evaluator.pack`` individuals a task; an individual still failing after its retries is
    recorded failed.

    A pack whose task raises (an individual failing in it, or its worker lost) is run again one individual a task,
    so each of its individuals is scored, or recorded failed, alone, as without packing.
    """
    import ray
    from ray.exceptions import RayError

    payload_ref, val_ref = evaluator.payload_ref, evaluator.val_ref

    def one_each(individuals: Sequence[Individual]) -> list[Any]:
        return [evaluator.solo.remote(payload_ref, val_ref, individual, settings) for individual in individuals]

    packs = [list(batch[i : i + evaluator.pack]) for i in range(0, len(batch), evaluator.pack)]
    refs = [evaluator.packed.remote(payload_ref, val_ref, p, settings) if len(p) > 1 else one_each(p) for p in packs]
    rows: list[dict[str, Any]] = []
    for pack, ref in zip(packs, refs, strict=True):
        if not isinstance(ref, list):
            try:
                results = ray.get(ref)
                rows.extend(
                    population_row(individual, rate_names, r, None) for individual, r in zip(pack, results, strict=True)
                )
                continue
            except RayError:
                ref = one_each(pack)
        for individual, solo_ref in zip(pack, ref, strict=True):
            try:
                rows.append(population_row(individual, rate_names, ray.get(solo_ref), None))
            except RayError as err:
                rows.append(population_row(individual, rate_names, FAILED_RESULT, _first_line(err)))
    return rows
