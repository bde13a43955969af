"""Relevance and parameter scores of every convolution channel (formulas §6).

The relevance score of a channel is a statistic (default mean |.|) of its mean LRP
relevance map ``(C, H, W)`` over the evaluation samples, the parameter score one (default
mean |w|) of its filter ``(C, C_in, k, k)``: the same six statistics the seed compared
serve both. Both scores are normalised per layer (:mod:`tuneprune.relevance.normalization`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from tuneprune.data import DatasetSplits
from tuneprune.relevance.channels import ConvUnit
from tuneprune.relevance.normalization import normalize_scores
from tuneprune.relevance.settings import RelevanceSettings

STATISTICS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": lambda flat: flat.mean(1),
    "mean_abs": lambda flat: flat.abs().mean(1),
    "max": lambda flat: flat.amax(1),
    "max_abs": lambda flat: flat.abs().amax(1),
    "min": lambda flat: flat.amin(1),
    "min_abs": lambda flat: flat.abs().amin(1),
}


def channel_statistic(values: torch.Tensor, statistic: str) -> torch.Tensor:
    """``statistic`` (a key of :data:`STATISTICS`) of every channel of ``values`` (channel first): shape ``(C,)``."""
    return STATISTICS[statistic](values.detach().flatten(1).float())


@dataclass
class ChannelScores:
    """Relevance and parameter score of every channel, shape ``(N,)`` each, on the CPU."""

    relevance: torch.Tensor
    parameter: torch.Tensor


def layer_scores(per_layer: Sequence[torch.Tensor], statistic: str) -> torch.Tensor:
    """``statistic`` of every channel of each layer's tensor (channel first: a mean relevance map
    or a convolution's filters), concatenated in layer order on the CPU."""
    return torch.cat([channel_statistic(values, statistic).cpu() for values in per_layer])


def relevance_samples(data: DatasetSplits, settings: RelevanceSettings) -> torch.Tensor:
    """The first ``eval_samples`` inputs of the configured split."""
    return getattr(data, f"x_{settings.split}")[: settings.eval_samples]


def channel_scores(
    model: nn.Module, units: Sequence[ConvUnit], data: DatasetSplits, settings: RelevanceSettings
) -> ChannelScores:
    """Score every channel of ``model`` (already on its device, as ``data`` is), normalised per layer."""
    from tuneprune.relevance.lrp import mean_channel_relevance  # zennit loads only when relevance is computed

    maps = mean_channel_relevance(model, units, relevance_samples(data, settings), settings)
    relevance = layer_scores(maps, settings.statistic)
    parameter = layer_scores([unit.conv.weight for unit in units], settings.parameter_statistic)
    return ChannelScores(
        normalize_scores(relevance, units, settings.normalize),
        normalize_scores(parameter, units, settings.parameter_normalize),
    )
