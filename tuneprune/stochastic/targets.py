"""Which layers a Stochastic Pruning sample touches (formulas §5)."""

from __future__ import annotations

import torch.nn as nn

from tuneprune.shared.config import ConfigError
from tuneprune.sparsity import prunable_layers
from tuneprune.sparsity.layers import PrunableLayer
from tuneprune.stochastic.config import TargetConfig

Layers = list[tuple[str, PrunableLayer]]


def _first_conv_and_classifier(model: nn.Module) -> tuple[str | None, str | None]:
    """Names of the first ``Conv2d`` and the last ``Linear`` in registration order."""
    layers = prunable_layers(model)
    convs = [name for name, module in layers if isinstance(module, nn.Conv2d)]
    linears = [name for name, module in layers if isinstance(module, nn.Linear)]
    return (convs[0] if convs else None), (linears[-1] if linears else None)


def target_layers(model: nn.Module, target: TargetConfig) -> Layers:
    """``(name, module)`` of the layers that get noise and are pruned, in registration order."""
    modules = dict(model.named_modules())
    unknown = [name for name in target.exclude if name not in modules]
    if unknown:
        raise ConfigError(f"target.exclude: no module named {unknown[0]!r} in the model")
    first_conv, classifier = _first_conv_and_classifier(model)
    excluded = set(target.exclude)
    if target.exclude_first_conv and first_conv:
        excluded.add(first_conv)
    if target.exclude_classifier and classifier:
        excluded.add(classifier)
    layers = [(name, module) for name, module in prunable_layers(model, target.min_size) if name not in excluded]
    if not layers:
        raise ConfigError("target: every prunable layer is excluded, nothing to prune")
    return layers
