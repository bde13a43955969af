"""zennit canonizers for the models of ``tuneprune.models`` (formulas §6).

- :class:`ResidualSumCanonizer`: zennit's ``ResNetCanonizer`` only knows torchvision's
  blocks. A plain ``body + shortcut`` hands the full relevance of the sum to both
  branches (autograd copies gradients across an addition), doubling it. This canonizer
  routes the addition through a :class:`zennit.layer.Sum` module, to which the
  composites apply the Norm rule: each branch receives relevance in proportion to its
  contribution, so relevance is conserved.
- :class:`ConvBatchNormMerge`: zennit's ``SequentialMergeBatchNorm`` merges any
  BatchNorm that follows a linear layer in module order, also one of a different width
  (DenseNet's next pre-activation BatchNorm after a concatenation), which fails. This one
  merges exactly the pairs :func:`~tuneprune.relevance.channels.conv_units` finds, the
  same pairs that pruning zeroes together; other BatchNorms keep the Pass rule.
"""

from __future__ import annotations

from typing import Any

import torch
from zennit.canonizers import AttributeCanonizer, MergeBatchNorm
from zennit.layer import Sum

from tuneprune.models.resnet import ResidualBlock
from tuneprune.relevance.channels import conv_units


class ResidualSumCanonizer(AttributeCanonizer):
    """Give every :class:`ResidualBlock` a ``Sum`` module and a forward that uses it."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name: str, module: torch.nn.Module) -> dict[str, Any] | None:
        if isinstance(module, ResidualBlock):
            return {"forward": cls.forward.__get__(module), "canonizer_sum": Sum()}
        return None

    @staticmethod
    def forward(self: ResidualBlock, x: torch.Tensor) -> torch.Tensor:
        """``relu(body(x) + shortcut(x))`` with the addition as a hookable module."""
        return self.relu(self.get_submodule("canonizer_sum")(torch.stack([self.shortcut(x), self.body(x)], dim=-1)))


class ConvBatchNormMerge(MergeBatchNorm):
    """Merge each BatchNorm into the convolution it directly follows (when widths agree)."""

    def apply(self, root_module: torch.nn.Module) -> list[MergeBatchNorm]:
        instances = []
        for unit in conv_units(root_module):
            if unit.norm is not None:
                instance = self.copy()
                instance.register((unit.conv,), unit.norm)
                instances.append(instance)
        return instances
