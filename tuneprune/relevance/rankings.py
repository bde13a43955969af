"""Channel rankings (formulas §6): least important first, so a prefix is what gets pruned.

A ranking is a list of global channel indices (see :mod:`tuneprune.relevance.channels`)
holding every channel exactly once. Relevance and parameter rankings sort the channel
scores ascending; the random ranking is the seeded control; the combined ranking
interleaves relevance and parameter (relevance first, seed 001 listing 4.3); the
delta-mixed ranking walks both with two accumulators (seed 001 listing 4.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from itertools import chain

import torch

# Accumulators run in exact rational arithmetic: with floats, ten steps of 0.1 sum to
# 0.9999999999999999 and the walk of delta = 0.1 would take its relevance index one
# step late. limit_denominator maps 0.1 to exactly 1/10.
_MAX_DENOMINATOR = 10**6


def ascending(scores: torch.Tensor) -> list[int]:
    """Channel indices from the lowest to the highest score (stable for ties)."""
    return torch.argsort(scores.detach().cpu(), stable=True).tolist()


def random_order(num_channels: int, seed: int) -> list[int]:
    """A seeded random permutation of the channels: the control ranking."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num_channels, generator=generator).tolist()


def _check_same_channels(first: Sequence[int], second: Sequence[int]) -> None:
    if len(set(first)) != len(first) or sorted(first) != sorted(second):
        raise ValueError("both rankings must be permutations of the same channels")


def combined_order(relevance_order: Sequence[int], parameter_order: Sequence[int]) -> list[int]:
    """Interleave the two rankings, relevance first, dropping repeats (formulas §6 'combined')."""
    _check_same_channels(relevance_order, parameter_order)
    return list(dict.fromkeys(chain.from_iterable(zip(relevance_order, parameter_order, strict=True))))


def mixed_order(parameter_order: Sequence[int], relevance_order: Sequence[int], delta: float) -> list[int]:
    """The delta-mixed ranking of formulas §6: ``delta = 0`` parameter-only, ``1`` relevance-only.

    The walk stops when either ranking is used up, by which point every channel has been taken, so the
    result holds every channel exactly once.
    """
    if not 0.0 <= delta <= 1.0:
        raise ValueError(f"delta = {delta}: must lie in [0, 1]")
    _check_same_channels(parameter_order, relevance_order)
    share = Fraction(delta).limit_denominator(_MAX_DENOMINATOR)
    a = b = Fraction(0)
    i = j = 0
    taken: list[int] = []
    while i < len(parameter_order) and j < len(relevance_order):
        a += 1 - share
        if a >= 1:
            taken.append(parameter_order[i])
            i, a = i + 1, a - 1
        b += share
        if b >= 1:
            taken.append(relevance_order[j])
            j, b = j + 1, b - 1
    return list(dict.fromkeys(taken))  # repeats dropped, as the seed does


DELTA_PREFIX = "delta="


def describe(key: str) -> dict[str, str | float]:
    """The parameters of a ranking key: ``{'ranking': 'mixed', 'delta': 0.3}`` for ``delta=0.3``."""
    if key.startswith(DELTA_PREFIX):
        return {"ranking": "mixed", "delta": float(key.removeprefix(DELTA_PREFIX))}
    return {"ranking": key}


def build_rankings(
    relevance_scores: torch.Tensor,
    parameter_scores: torch.Tensor,
    names: Sequence[str],
    deltas: Sequence[float],
    seed: int,
) -> dict[str, list[int]]:
    """Every ranking in ``names`` (relevance, parameter, random, combined) and one per delta (``delta=0.3``)."""
    relevance, parameter = ascending(relevance_scores), ascending(parameter_scores)
    available = {
        "relevance": lambda: relevance,
        "parameter": lambda: parameter,
        "random": lambda: random_order(len(relevance), seed),
        "combined": lambda: combined_order(relevance, parameter),
    }
    rankings = {name: available[name]() for name in names}
    rankings.update({f"{DELTA_PREFIX}{d:g}": mixed_order(parameter, relevance, d) for d in deltas})
    return rankings
