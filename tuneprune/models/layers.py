"""Layers shared by the model zoo (formulas §1.7): conv + BN units, the pooled classifier, init."""

from __future__ import annotations

import torch.nn as nn


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """A bias-free ``kernel_size`` conv with 'same' padding followed by BatchNorm."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels))


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """``conv_bn`` followed by an in-place ReLU."""
    return nn.Sequential(*conv_bn(in_channels, out_channels, kernel_size, stride, groups), nn.ReLU(inplace=True))


def pooled_classifier(in_features: int, num_classes: int) -> nn.Sequential:
    """Global average pool (any spatial size), flatten, then a single linear layer."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_features, num_classes))


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan-out, ReLU) convs; BatchNorm weight 1, bias 0; linears keep defaults."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
