"""The Ray tasks that score individuals: k noisy samples of the dense model, median accuracy, sparsity (formulas §5).

The dense model (state_dict and how to build it) and the validation split reach the
workers once through the object store; an individual carries only its variables and
its noise seed, derived from (evolution seed, generation, index), so any evaluation is
deterministic and a resumed evolution repeats it exactly. :func:`evaluate_individual`
scores one individual; :func:`evaluate_pack` several of a generation at once: every
individual prunes the same dense model, so the k samples of each become the members of
one :class:`~tuneprune.training.stack.StackedModel` (only the targeted weights differ),
and each validation batch goes through all of them in one stacked forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from tuneprune.models import create_model
from tuneprune.shared.config import ConfigError
from tuneprune.stochastic import Pruner, TargetConfig, derive_seed, score_samples, sparsities, target_layers
from tuneprune.stochastic.pruning import Layers
from tuneprune.training.evaluate import evaluate_stacked
from tuneprune.training.stack import StackedModel


@dataclass(frozen=True)
class Individual:
    """One decision vector of one generation, decoded."""

    generation: int
    index: int
    sigma: float
    rates: tuple[float, ...]
    seed: int


@dataclass(frozen=True)
class EvalSettings:
    """What every evaluation of an evolution shares."""

    samples: int
    target: TargetConfig
    groups: dict[str, list[str]]
    batch_size: int
    threads: int = 1
    use_gpu: bool = False
    fail: frozenset[tuple[int, int]] = field(default_factory=frozenset)


class InjectedFailure(RuntimeError):
    """Raised for the individuals a space lists in ``fail_individuals`` (a testing aid)."""


def group_layers(layers: Sequence[tuple[str, nn.Module]], groups: dict[str, list[str]]) -> list[list[int]]:
    """Indices into ``layers`` per group of ``groups`` (group name -> module-name prefixes), a pruning rate each
    (formulas §5: "may add per-layer rates as extra variables").

    Every layer must fall into exactly one group and every group must match a layer;
    no groups means one group of all layers.
    """
    if not groups:
        return [list(range(len(layers)))]
    members: dict[str, list[int]] = {name: [] for name in groups}
    for i, (layer, _) in enumerate(layers):
        hits = [name for name, prefixes in groups.items() if any(f"{layer}.".startswith(f"{p}.") for p in prefixes)]
        if len(hits) != 1:
            found = "no group" if not hits else "groups " + ", ".join(hits)
            raise ConfigError(f"variables.groups: layer {layer!r} is in {found}; every pruned layer needs exactly one")
        members[hits[0]].append(i)
    for name, member in members.items():
        if not member:
            raise ConfigError(f"variables.groups.{name}: matches no pruned layer")
    return list(members.values())


def dense_payload(model: nn.Module, model_name: str, num_classes: int, in_channels: int) -> dict[str, Any]:
    """What the object store holds of the dense model."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"model": model_name, "num_classes": num_classes, "in_channels": in_channels, "state_dict": state}


def check_injected(individual: Individual, settings: EvalSettings) -> None:
    """Raise :class:`InjectedFailure` for an individual the space lists in ``fail_individuals``."""
    if (individual.generation, individual.index) in settings.fail:
        raise InjectedFailure(
            f"injected failure of individual {individual.index} in generation {individual.generation}"
        )


def sample_seeds(individual: Individual, samples: int) -> list[int]:
    """The noise seeds of the individual's ``samples`` draws: (individual seed, j) (formulas §9)."""
    return [derive_seed(individual.seed, j) for j in range(samples)]


def setup(payload: dict[str, Any], settings: EvalSettings) -> tuple[torch.device, nn.Module, Layers, Pruner]:
    """The task's threads and device, the dense model rebuilt there, its target layers and their pruner."""
    torch.set_num_threads(settings.threads)
    device = torch.device("cuda" if settings.use_gpu and torch.cuda.is_available() else "cpu")
    model = create_model(payload["model"], payload["num_classes"], payload["in_channels"])
    model.load_state_dict(payload["state_dict"])
    model.to(device)
    layers = target_layers(model, settings.target)
    return device, model, layers, Pruner(layers, group_layers(layers, settings.groups))


def result(accuracies: list[float], measured: dict[str, float]) -> dict[str, Any]:
    """An evaluation's outcome from its sample accuracies and the :func:`~tuneprune.stochastic.sparsities` of its last sample."""
    return {
        "accuracy": float(np.median(accuracies)),
        "accuracies": accuracies,
        "sparsity": measured["model_sparsity"],
        "pruned_layers_sparsity": measured["pruned_layers_sparsity"],
    }


def evaluate_individual(
    payload: dict[str, Any], val: dict[str, torch.Tensor], individual: Individual, settings: EvalSettings
) -> dict[str, Any]:
    """``accuracy`` (median over the k samples), the sample ``accuracies``, ``sparsity`` (of the whole model, the
    objective) and ``pruned_layers_sparsity`` (of the layers the rates prune), :func:`~tuneprune.stochastic.sparsities`."""
    check_injected(individual, settings)
    device, model, _, pruner = setup(payload, settings)
    x, y = val["x"].to(device), val["y"].to(device)
    seeds = sample_seeds(individual, settings.samples)
    accuracies = score_samples(model, pruner, x, y, individual.sigma, individual.rates, seeds, settings.batch_size)
    return result(accuracies, sparsities(model, pruner.modules, settings.target.min_size))


def evaluate_pack(
    payload: dict[str, Any],
    val: dict[str, torch.Tensor],
    batch: Sequence[Individual],
    settings: EvalSettings,
    forward_mode: str | None = None,
) -> list[dict[str, Any]]:
    """:func:`evaluate_individual` of every individual of ``batch``, in order.

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
