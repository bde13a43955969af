"""DenseNet-BC for 32x32 inputs (Huang et al. 2017; formulas §1.7).

A 3x3 stem conv to ``2 * growth_rate`` channels, three dense blocks of (depth - 4) / 6
bottleneck layers (BN-ReLU-1x1 conv to ``4 * growth_rate``, BN-ReLU-3x3 conv to
``growth_rate``, output concatenated to the input), separated by transitions
(BN-ReLU-1x1 conv shrinking channels by ``reduction``, 2x2 average pool), then BN-ReLU,
global average pooling and one linear layer. DenseNet-BC-40-24 (depth 40, growth 24,
reduction 0.5) has about 0.71M parameters at 100 classes.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from tuneprune.models.layers import init_weights, pooled_classifier


def bn_relu_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Pre-activation unit: BN, ReLU, then a bias-free ``kernel_size`` conv with 'same' padding."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
    )


class DenseLayer(nn.Module):
    """Bottleneck layer whose ``growth_rate`` new feature maps are concatenated to its input."""

    def __init__(self, in_channels: int, growth_rate: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            bn_relu_conv(in_channels, 4 * growth_rate, 1), bn_relu_conv(4 * growth_rate, growth_rate, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class DenseNetBC(nn.Module):
    """DenseNet-BC with three dense blocks; the default is DenseNet-BC-40-24."""

    def __init__(
        self, num_classes: int, in_channels: int, depth: int = 40, growth_rate: int = 24, reduction: float = 0.5
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"DenseNet-BC depth must be 6n + 4 with n >= 1, got {depth}")
        layers_per_block = (depth - 4) // 6
        channels = 2 * growth_rate
        features: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)]
        for block in range(3):
            if block > 0:
                reduced = math.floor(channels * reduction)
                features += [bn_relu_conv(channels, reduced, 1), nn.AvgPool2d(2)]
                channels = reduced
            for _ in range(layers_per_block):
                features.append(DenseLayer(channels, growth_rate))
                channels += growth_rate
        features += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*features)
        self.head = pooled_classifier(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
