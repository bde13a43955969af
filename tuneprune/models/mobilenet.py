"""MobileNetV1 for 32x32 inputs (Howard et al. 2017; formulas §1.7).

Width multiplier 1: a 3x3 conv to 32 channels at stride 1 (CIFAR variant, not ImageNet's
stride 2), then 13 depthwise-separable blocks (3x3 depthwise conv-BN-ReLU, 1x1 pointwise
conv-BN-ReLU) up to 1024 channels with four stride-2 blocks, global average pooling and
one linear layer. About 3.3M parameters at 100 classes.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from tuneprune.models.layers import conv_bn_relu, init_weights, pooled_classifier

# (pointwise output channels, depthwise stride) of each depthwise-separable block.
_BLOCKS: tuple[tuple[int, int], ...] = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *((512, 1),) * 5,
                                        (1024, 2), (1024, 1))  # fmt: skip


class MobileNetV1(nn.Module):
    """Stem conv (32 channels, stride 1), 13 depthwise-separable blocks, pooled linear head."""

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        channels = 32
        self.stem = conv_bn_relu(in_channels, channels, 3)
        blocks = []
        for out_channels, stride in _BLOCKS:  # 3x3 depthwise conv-BN-ReLU (strided), 1x1 pointwise conv-BN-ReLU
            depthwise = conv_bn_relu(channels, channels, 3, stride, groups=channels)
            blocks.append(nn.Sequential(depthwise, conv_bn_relu(channels, out_channels, 1)))
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = pooled_classifier(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))
