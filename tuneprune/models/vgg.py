"""VGG with BatchNorm for 32x32 inputs (Simonyan & Zisserman 2015; formulas §1.7).

The common CIFAR variant: 3x3 conv-BN-ReLU layers in five groups, each closed by a 2x2
max-pool (32x32 -> 1x1 with 512 channels), then a single Linear(512, num_classes)
instead of ImageNet's three fully-connected layers. The pools round up (``ceil_mode``), so
28x28 inputs (MNIST, Fashion-MNIST) reach 1x1 too (28 -> 14 -> 7 -> 4 -> 2 -> 1); on 32x32
nothing changes. VGG-16 has about 14.7M and VGG-19 about 20.0M parameters at 10 classes.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from tuneprune.models.layers import conv_bn_relu, init_weights, pooled_classifier

# Conv output widths per group; every group ends with a 2x2 max-pool.
_GROUPS: dict[int, tuple[tuple[int, ...], ...]] = {
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


class VGG(nn.Module):
    """VGG-``depth`` (16 or 19) with BatchNorm and a single linear classifier."""

    def __init__(self, num_classes: int, in_channels: int, depth: int = 16) -> None:
        super().__init__()
        if depth not in _GROUPS:
            raise ValueError(f"VGG depth must be one of {sorted(_GROUPS)}, got {depth}")
        channels = in_channels
        layers: list[nn.Module] = []
        for group in _GROUPS[depth]:
            for width in group:
                layers.append(conv_bn_relu(channels, width, 3))
                channels = width
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.head = pooled_classifier(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
