"""Model zoo for pruning benchmarks (SPEC 1.7): ``create_model(name, num_classes, in_channels)``."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from tuneprune.models.small_cnn import SmallCNN

ModelFactory = Callable[[int, int], nn.Module]

MODELS: dict[str, ModelFactory] = {
    "small_cnn": lambda num_classes, in_channels: SmallCNN(num_classes, in_channels),
}


def create_model(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """Build a freshly initialised model by name (see ``MODELS``)."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}, allowed: {', '.join(sorted(MODELS))}") from None
    return factory(num_classes, in_channels)


__all__ = ["MODELS", "create_model"]
