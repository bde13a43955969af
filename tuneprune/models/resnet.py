"""ResNets for 32x32 inputs (He et al. 2016; formulas §1.7).

Every variant is one ``ResNet`` backbone: a 3x3 stem conv (stride 1, no max-pool), stages
of residual blocks (the first stage at stride 1, every later one halving the resolution
in its first block), global average pooling and one linear layer. Shortcuts are identity,
or a 1x1 conv + BN projection when the shape changes.

- ``cifar_resnet(depth, width)``: the CIFAR ResNet-(6n+2), three stages of n basic blocks,
  widths 16/32/64 times ``width`` (ResNet-20/32/56; ``width=2`` is the double-width
  ResNet-20 of Feather, about 1.09M parameters at 100 classes).
- ``resnet18`` / ``resnet50`` (in ``MODELS``): the ImageNet layouts with a CIFAR stem (as in kuangliu's
  pytorch-cifar), basic blocks 2/2/2/2 and bottleneck blocks 3/4/6/3, widths 64/128/256/512.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from tuneprune.models.layers import conv_bn, conv_bn_relu, init_weights, pooled_classifier


class ResidualBlock(nn.Module):
    """``relu(body(x) + shortcut(x))``; subclasses build ``body`` and set ``expansion``."""

    expansion: int = 1

    def __init__(self, body: nn.Module, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = body
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = conv_bn(in_channels, out_channels, 1, stride) if needs_projection else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class BasicBlock(ResidualBlock):
    """Two 3x3 conv-BN layers (the first strided) with a ReLU between them."""

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        body = nn.Sequential(conv_bn_relu(in_channels, width, 3, stride), conv_bn(width, width, 3))
        super().__init__(body, in_channels, width, stride)


class Bottleneck(ResidualBlock):
    """1x1 reduce, strided 3x3, 1x1 expand to ``4 * width`` channels (each conv followed by BN)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        out_channels = width * self.expansion
        body = nn.Sequential(
            conv_bn_relu(in_channels, width, 1),
            conv_bn_relu(width, width, 3, stride),
            conv_bn(width, out_channels, 1),
        )
        super().__init__(body, in_channels, out_channels, stride)


class ResNet(nn.Module):
    """Stem conv, stage i of ``blocks_per_stage[i]`` blocks of width ``widths[i]``, linear head."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        blocks_per_stage: Sequence[int],
        widths: Sequence[int],
        num_classes: int,
        in_channels: int,
    ) -> None:
        super().__init__()
        channels = widths[0]
        self.stem = conv_bn_relu(in_channels, channels, 3)
        stages = []
        for index, (num_blocks, width) in enumerate(zip(blocks_per_stage, widths, strict=True)):
            blocks = []
            for position in range(num_blocks):
                stride = 2 if index > 0 and position == 0 else 1
                blocks.append(block(channels, width, stride))
                channels = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = pooled_classifier(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def cifar_resnet(num_classes: int, in_channels: int, depth: int, width: int = 1) -> ResNet:
    """CIFAR ResNet-``depth`` (depth = 6n + 2) with stage widths ``width`` x 16/32/64."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1, got {depth}")
    blocks = (depth - 2) // 6
    widths = tuple(width * base for base in (16, 32, 64))
    return ResNet(BasicBlock, (blocks,) * 3, widths, num_classes, in_channels)
