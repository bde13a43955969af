"""Rankings of formulas §6: the delta-mixed walk, the combined interleaving, seeded random order."""

from __future__ import annotations

import random

import pytest
import torch

from tuneprune.relevance import combined_order, mixed_order
from tuneprune.relevance.rankings import build_rankings, describe, random_order
from tuneprune.relevance.scores import STATISTICS, channel_statistic

PARAMETER = [0, 1, 2, 3, 4, 5]
RELEVANCE = [5, 4, 3, 2, 1, 0]


def test_delta_zero_is_the_parameter_order_and_one_the_relevance_order():
    assert mixed_order(PARAMETER, RELEVANCE, 0.0) == PARAMETER
    assert mixed_order(PARAMETER, RELEVANCE, 1.0) == RELEVANCE


def test_delta_half_alternates_parameter_first():
    parameter, relevance = [0, 1, 2, 3, 4, 5, 6, 7], [4, 5, 6, 7, 0, 1, 2, 3]
    assert mixed_order(parameter, relevance, 0.5) == [0, 4, 1, 5, 2, 6, 3, 7]


def test_delta_tenth_takes_exactly_one_relevance_index_every_ten_steps():
    parameter = list(range(30))
    relevance = list(reversed(parameter))
    order = mixed_order(parameter, relevance, 0.1)
    # a reaches 1 at steps 2..10 (nine parameter indices), b at step 10 exactly (with float
    # accumulators 10 x 0.1 = 0.9999999999999999 and the relevance index would come a step late).
    assert order[:10] == [*range(9), 29]
    assert order[10:20] == [*range(9, 18), 28]


@pytest.mark.parametrize("seed", range(20))
def test_every_mixed_order_is_a_permutation(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 60)
    parameter = rng.sample(range(n), n)
    relevance = rng.sample(range(n), n)
    delta = rng.random() if seed % 4 else rng.choice([0.0, 0.1, 0.3, 0.7, 1.0])
    order = mixed_order(parameter, relevance, delta)
    assert sorted(order) == list(range(n))


def test_mixed_order_rejects_bad_inputs():
    with pytest.raises(ValueError, match="delta"):
        mixed_order(PARAMETER, RELEVANCE, 1.5)
    with pytest.raises(ValueError, match="permutations"):
        mixed_order([0, 1, 2], [0, 1, 1], 0.5)


def test_combined_interleaves_relevance_first_dropping_repeats():
    assert combined_order([3, 1, 2, 0], [1, 0, 2, 3]) == [3, 1, 0, 2]
    assert combined_order(RELEVANCE, PARAMETER) == [5, 0, 4, 1, 3, 2]


def test_build_rankings_sorts_ascending_and_names_deltas():
    relevance = torch.tensor([0.3, 0.1, 0.2])
    parameter = torch.tensor([0.1, 0.3, 0.2])
    rankings = build_rankings(relevance, parameter, ["relevance", "parameter", "random"], [0.0, 0.5], seed=3)
    assert rankings["relevance"] == [1, 2, 0]
    assert rankings["parameter"] == [0, 2, 1]
    assert rankings["delta=0"] == rankings["parameter"]
    assert sorted(rankings["delta=0.5"]) == [0, 1, 2]
    assert rankings["random"] == random_order(3, 3)
    assert sorted(rankings["random"]) == [0, 1, 2]
    assert describe("delta=0.5") == {"ranking": "mixed", "delta": 0.5}
    assert describe("random") == {"ranking": "random"}


def test_channel_statistics_reduce_everything_but_the_channel():
    values = torch.tensor([[[-3.0, 1.0]], [[2.0, -0.5]]])
    expected = {
        "mean": [-1.0, 0.75], "mean_abs": [2.0, 1.25], "max": [1.0, 2.0],
        "max_abs": [3.0, 2.0], "min": [-3.0, -0.5], "min_abs": [1.0, 0.5],
    }  # fmt: skip
    assert set(expected) == set(STATISTICS)
    for name, want in expected.items():
        assert channel_statistic(values, name).tolist() == want
