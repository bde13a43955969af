"""The Ray task that scores several individuals of a generation at once: all their samples stacked (formulas §5).

Every individual of a generation prunes the same dense model, so their samples share
every shape: the k samples of each of the pack's individuals become the members of one
:class:`~tuneprune.training.stack.StackedModel` (only the targeted weights differ), and
each validation batch goes through all of them in one stacked forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tuneprune.evolution.worker import EvalSettings, Individual, check_injected, result, sample_seeds, setup
from tuneprune.stochastic import sparsities
from tuneprune.training.evaluate import evaluate_stacked
from tuneprune.training.stack import StackedModel


def evaluate_pack(
    payload: dict[str, Any],
    val: dict[str, torch.Tensor],
    batch: Sequence[Individual],
    settings: EvalSettings,
    forward_mode: str | None = None,
) -> list[dict[str, Any]]:
    """:func:`~tuneprune.evolution.worker.evaluate_individual` of every individual of ``batch``, in order.

    A sample is the same pruned model as alone (the same seeds, the pruner on the same
    dense weights); with the ``loop`` forward (the CPU's default) each member runs the
    kernels it runs alone, so the results are bit for bit the same. The fused ``vmap``
    forward (CUDA's default) may sum the convolutions in another order. The task holds
    ``len(batch) * samples`` copies of the model. Raises when any individual would (its
    injected failure included): the caller then evaluates them one by one.
    """
    for individual in batch:
        check_injected(individual, settings)
    device, model, layers, pruner = setup(payload, settings)
    k = settings.samples
    mode = forward_mode or ("vmap" if device.type == "cuda" else "loop")
    members = k * len(batch)
    stack = StackedModel([model] * members, [f"{name}.weight" for name, _ in layers], mode)
    weights = stack.weights
    assert weights is not None  # the target layers' weights are stacked
    measured = []
    with torch.no_grad():
        for i, individual in enumerate(batch):
            for j, seed in enumerate(sample_seeds(individual, k)):
                pruner.apply(individual.sigma, individual.rates, seed)
                weights[i * k + j] = torch.cat([module.weight.flatten() for module in pruner.modules])
            measured.append(sparsities(model, pruner.modules, settings.target.min_size))
    x, y = val["x"].to(device), val["y"].to(device)
    accuracies, _ = evaluate_stacked(stack, weights, [x] * members, [y] * members, settings.batch_size)
    return [result(accuracies[i * k : (i + 1) * k], m) for i, m in enumerate(measured)]
