"""Convolution channels of a model: discovery, selection at a percentage, pruning (formulas §6).

Every output channel of every ``nn.Conv2d`` is a prunable channel. Channels carry a
global index: layer by layer in module order, channel by channel within a layer.
Pruning a channel zeroes its filter and bias and, when a BatchNorm directly follows the
convolution in module order (as in every model of the zoo), that BatchNorm's scale and
shift, so the channel's output is exactly zero whatever its input.

No layer is ever pruned to zero channels: a layer without channels cuts the network
(a VGG) or leaves only the shortcut (a ResNet block), which measures the architecture
rather than the ranking: selection skips a layer's last channel (in the global scope
any channel below the layer's floor, formulas §10.4) and continues down the ranking.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn as nn

from tuneprune.relevance.settings import Scope


@dataclass(frozen=True)
class ConvUnit:
    """A convolution, the BatchNorm that directly follows it (if any), and its first global index."""

    name: str
    conv: nn.Conv2d
    norm: nn.BatchNorm2d | None
    offset: int

    @property
    def size(self) -> int:
        return self.conv.out_channels


def conv_units(model: nn.Module) -> list[ConvUnit]:
    """Every convolution of ``model`` in module order, paired with its following BatchNorm."""
    leaves = [(name, module) for name, module in model.named_modules() if not any(module.children())]
    units: list[ConvUnit] = []
    offset = 0
    for (name, module), (_, following) in pairwise([*leaves, ("", None)]):  # each leaf and the next
        if isinstance(module, nn.Conv2d):
            matched = isinstance(following, nn.BatchNorm2d) and following.num_features == module.out_channels
            units.append(ConvUnit(name, module, following if matched else None, offset))
            offset += module.out_channels
    return units


def layer_of_channels(units: Sequence[ConvUnit]) -> list[int]:
    """For each global channel index, the position of its layer in ``units``."""
    return [layer for layer, unit in enumerate(units) for _ in range(unit.size)]


def _count(percentage: float, size: int) -> int:
    """Channels pruned at ``percentage`` of ``size``, rounded half up."""
    return math.floor(percentage / 100.0 * size + 0.5)


def layer_floor(size: int, min_layer_share: float) -> int:
    """Channels a layer of ``size`` keeps in the global scope: ``max(1, ceil(share * size))``."""
    return max(1, math.ceil(min_layer_share * size - 1e-9))


def select_channels(
    order: Sequence[int], units: Sequence[ConvUnit], percentage: float, scope: Scope, min_layer_share: float = 0.0
) -> list[int]:
    """The channels to prune: the lowest-ranked ``percentage`` % of ``order``.

    ``global``: ``round(p * N)`` channels over all ``N`` channels, capped so that every
    layer keeps :func:`layer_floor` channels (at least one, at least ``min_layer_share``
    of its ``n_l``); ``layer``: ``round(p * n_l)`` of every layer's ``n_l`` channels,
    capped at ``n_l - 1``, taken in the order of the ranking.
    """
    layer = layer_of_channels(units)
    sizes = [unit.size for unit in units]
    if scope == "global":
        budget = [size - layer_floor(size, min_layer_share) for size in sizes]
        wanted = min(_count(percentage, len(layer)), sum(budget))
    else:
        budget = [min(_count(percentage, size), size - 1) for size in sizes]
        wanted = sum(budget)
    selected: list[int] = []
    for channel in order:
        if len(selected) == wanted:
            break
        if budget[layer[channel]] > 0:
            budget[layer[channel]] -= 1
            selected.append(channel)
    return selected


def pruned_entries(units: Sequence[ConvUnit], channels: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(tensor, mask)`` for every tensor that pruning ``channels`` changes (a unit's filter, bias and
    BatchNorm scale and shift): ``mask`` (on the CPU) is ``True`` at the pruned output channels of its unit."""
    pruned = torch.zeros(sum(unit.size for unit in units), dtype=torch.bool)
    pruned[list(channels)] = True
    return [
        (tensor, mask)
        for unit, mask in zip(units, pruned.split([unit.size for unit in units]), strict=True)
        if mask.any()
        for module in (unit.conv, unit.norm)
        if module is not None
        for tensor in (module.weight, module.bias)
        if tensor is not None
    ]


@torch.no_grad()
def prune_channels(units: Sequence[ConvUnit], channels: Sequence[int]) -> None:
    """Zero the filters, biases and BatchNorm scale and shift of ``channels`` in place."""
    for tensor, mask in pruned_entries(units, channels):
        tensor[mask.to(tensor.device)] = 0.0


@contextmanager
def channels_pruned(units: Sequence[ConvUnit], channels: Sequence[int]) -> Iterator[None]:
    """Prune ``channels`` for the duration of the block, then restore the original values."""
    saved = [(tensor, tensor.detach().clone()) for tensor, _ in pruned_entries(units, channels)]
    prune_channels(units, channels)
    try:
        yield
    finally:
        with torch.no_grad():
            for tensor, original in saved:
                tensor.copy_(original)
