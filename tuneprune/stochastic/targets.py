"""Which layers a Stochastic Pruning sample touches (formulas §5)."""

from __future__ import annotations

import torch.nn as nn

from tuneprune.shared.config import ConfigError
from tuneprune.sparsity import prunable_layers
from tuneprune.sparsity.layers import PrunableLayer
from tuneprune.stochastic.config import TargetConfig

Layers = list[tuple[str, PrunableLayer]]


def target_layers(model: nn.Module, target: TargetConfig) -> Layers:
    """``(name, module)`` of the layers that get noise and are pruned, in registration order."""
    modules = dict(model.named_modules())
    unknown = [name for name in target.exclude if name not in modules]
    if unknown:
        raise ConfigError(f"target.exclude: no module named {unknown[0]!r} in the model")
    prunable = prunable_layers(model)  # the first Conv2d and the last Linear (the classifier), in registration order:
    convs = [name for name, module in prunable if isinstance(module, nn.Conv2d)]
    linears = [name for name, module in prunable if isinstance(module, nn.Linear)]
    excluded = set(target.exclude)
    if target.exclude_first_conv and convs:
        excluded.add(convs[0])
    if target.exclude_classifier and linears:
        excluded.add(linears[-1])
    layers = [(name, module) for name, module in prunable_layers(model, target.min_size) if name not in excluded]
    if not layers:
        raise ConfigError("target: every prunable layer is excluded, nothing to prune")
    return layers
