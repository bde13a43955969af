"""The pymoo side: decision variables, the problem, the algorithm, and objective values (formulas §5).

pymoo minimises, so the objectives accuracy and sparsity (both maximised) are negated.
The problem has no ``_evaluate``: evaluation happens on Ray, driven by ask and tell.
"""

from __future__ import annotations

import math

import numpy as np
from pymoo.core.algorithm import Algorithm
from pymoo.core.problem import Problem
from pymoo.core.termination import NoTermination

from tuneprune.evolution.space import AlgorithmConfig, EvolutionSpace

OBJECTIVES = ("accuracy", "sparsity")


def build_algorithm(config: AlgorithmConfig) -> Algorithm:
    """NSGA-II (default), NSGA-III (Das-Dennis directions, one per individual) or SMS-EMOA."""
    if config.type == "nsga3":
        from pymoo.algorithms.moo.nsga3 import NSGA3
        from pymoo.util.ref_dirs import get_reference_directions

        ref_dirs = get_reference_directions("das-dennis", len(OBJECTIVES), n_partitions=config.pop_size - 1)
        return NSGA3(ref_dirs=ref_dirs, pop_size=config.pop_size, seed=config.seed)
    if config.type == "smsemoa":
        from pymoo.algorithms.moo.sms import SMSEMOA

        return SMSEMOA(pop_size=config.pop_size, seed=config.seed)
    from pymoo.algorithms.moo.nsga2 import NSGA2

    return NSGA2(pop_size=config.pop_size, seed=config.seed)


def new_algorithm(space: EvolutionSpace) -> Algorithm:
    """An algorithm set up on the space's problem, ready for ``ask``; the caller decides when to stop.

    The problem's variables are ``[log10(sigma), rate_1, ..., rate_g]`` within the space's bounds.
    """
    v = space.variables
    n_rates = len(v.rate_names)
    xl = np.array([math.log10(v.sigma.low)] + [v.rate.low] * n_rates)
    xu = np.array([math.log10(v.sigma.high)] + [v.rate.high] * n_rates)
    algorithm = build_algorithm(space.algorithm)
    algorithm.setup(Problem(n_var=1 + n_rates, n_obj=len(OBJECTIVES), xl=xl, xu=xu), termination=NoTermination())
    return algorithm


def decode(x: np.ndarray) -> tuple[float, tuple[float, ...]]:
    """``(sigma, rates)`` of one decision vector."""
    return float(10.0 ** x[0]), tuple(float(r) for r in x[1:])


def objective_values(accuracy: float, sparsity: float) -> list[float]:
    """The minimised objective vector of an individual."""
    return [-accuracy, -sparsity]
