"""Model zoo for pruning benchmarks (formulas §1.7): ``create_model(name, num_classes, in_channels)`` builds any
model of ``MODELS`` (``small_cnn`` for the 8x8 digits, the others for 32x32 CIFAR-style inputs)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch.nn as nn

from tuneprune.models.densenet import DenseNetBC
from tuneprune.models.mobilenet import MobileNetV1
from tuneprune.models.resnet import BasicBlock, Bottleneck, ResNet, cifar_resnet
from tuneprune.models.small_cnn import SmallCNN
from tuneprune.models.vgg import VGG

MODELS: dict[str, Callable[[int, int], nn.Module]] = {
    "small_cnn": SmallCNN,
    "resnet20": partial(cifar_resnet, depth=20),
    "resnet20x2": partial(cifar_resnet, depth=20, width=2),
    "resnet32": partial(cifar_resnet, depth=32),
    "resnet56": partial(cifar_resnet, depth=56),
    "resnet18": partial(ResNet, BasicBlock, (2, 2, 2, 2), (64, 128, 256, 512)),
    "resnet50": partial(ResNet, Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512)),
    "mobilenet_v1": MobileNetV1,
    "densenet40_24": partial(DenseNetBC, depth=40, growth_rate=24, reduction=0.5),
    "vgg16": partial(VGG, depth=16),
    "vgg19": partial(VGG, depth=19),
}


def create_model(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """Build a freshly initialised model by name (see ``MODELS``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}, allowed: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes, in_channels)


__all__ = ["MODELS", "create_model"]
