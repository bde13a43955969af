"""Which weights are pruned (formulas §1.1) and how sparse a plain model is."""

from __future__ import annotations

import torch
import torch.nn as nn

from tuneprune.shared.config import ConfigError

PrunableLayer = nn.Conv2d | nn.Linear


def prunable_layers(model: nn.Module, min_size: int = 0) -> list[tuple[str, PrunableLayer]]:
    """``(name, module)`` of every ``Conv2d`` and ``Linear`` with at least ``min_size`` weights (formulas §1.1).

    The first convolution, the classifier, 1x1 shortcuts and depthwise convolutions are
    included; biases and BatchNorm parameters are never pruned.
    """
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, PrunableLayer) and module.weight.numel() >= min_size
    ]


def pruned_layers(model: nn.Module, min_size: int = 0) -> list[tuple[str, PrunableLayer]]:
    """:func:`prunable_layers`, at least one: else a one-line :class:`ConfigError` naming ``min_size`` and its range."""
    layers = prunable_layers(model, min_size)
    if layers:
        return layers
    sizes = [module.weight.numel() for _, module in prunable_layers(model)]
    if not sizes:
        raise ConfigError("the model has no prunable layers (Conv2d/Linear)")
    raise ConfigError(
        f"sparsity.min_size = {min_size}: the model has no prunable layers with that many weights, "
        f"allowed: up to {max(sizes)} (its largest Conv2d/Linear)"
    )


def original_weight(module: nn.Module) -> nn.Parameter:
    """The plain weight of a layer whose ``weight`` is parametrized (``<layer>.parametrizations.weight.original``)."""
    return module.get_parameter("parametrizations.weight.original")


@torch.no_grad()
def prunable_sparsity(model: nn.Module, min_size: int = 0) -> float:
    """Fraction of exact zeros over the weights of :func:`prunable_layers`."""
    zeros = total = 0
    for _, module in prunable_layers(model, min_size):
        weight = module.weight
        zeros += int((weight == 0).sum())
        total += weight.numel()
    if total == 0:
        raise ValueError("the model has no prunable layers")
    return zeros / total


def parametrized_order(model: nn.Module, prunable: set[str] | frozenset[str]) -> list[str]:
    """The names of ``model``'s parameters in the order ``model.parameters()`` yields them once the weights
    named in ``prunable`` (``"<layer>.weight"``) are parametrized, as :class:`~tuneprune.sparsity.Sparsifier`
    does; each weight keeps its plain name.

    ``torch.nn.utils.parametrize`` moves a weight to ``<layer>.parametrizations.weight.original``,
    a sub-module appended after the layer's own parameters and children, so the weight comes
    last among its layer's parameters. Gradient-norm clipping sums the per-tensor norms in
    this order (formulas §1.6), so a run of :func:`~tuneprune.training.train` (any pack member)
    clips bit for bit as a loop of your own with the Sparsifier and ``clip_grad_norm_``.
    """

    def walk(module: nn.Module, prefix: str) -> list[str]:
        own = [prefix + name for name, p in module._parameters.items() if p is not None]
        names = [name for name in own if name not in prunable]
        for child_name, child in module._modules.items():
            if child is not None:
                names += walk(child, f"{prefix}{child_name}.")
        return names + [name for name in own if name in prunable]

    return walk(model, "")
