"""Which weights are pruned (formulas §1.1) and how sparse a plain model is."""

from __future__ import annotations

import torch
import torch.nn as nn

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)


def prunable_layers(model: nn.Module, min_size: int = 0) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every ``Conv2d`` and ``Linear`` with at least ``min_size`` weights (formulas §1.1).

    The first convolution, the classifier, 1x1 shortcuts and depthwise convolutions are
    included; biases and BatchNorm parameters are never pruned.
    """
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_TYPES) and module.weight.numel() >= min_size
    ]


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
