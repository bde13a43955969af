"""Relevance and parameter scores of every convolution channel (formulas §6).

The relevance score of a channel is a statistic (default mean |.|) of its mean LRP
relevance map over the evaluation samples; the parameter score a statistic (default
mean |w|) of its filter. Both are vectors over the global channel index of
:mod:`tuneprune.relevance.channels`, normalised per layer as the settings say
(:mod:`tuneprune.relevance.normalization`: raw scores of different layers are not comparable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from tuneprune.data import DatasetSplits
from tuneprune.relevance.channels import ConvUnit
from tuneprune.relevance.normalization import normalize_scores
from tuneprune.relevance.settings import RelevanceSettings
from tuneprune.relevance.statistics import channel_statistic


@dataclass
class ChannelScores:
    """Relevance and parameter score of every channel, shape ``(N,)`` each, on the CPU."""

    relevance: torch.Tensor
    parameter: torch.Tensor


def parameter_scores(units: Sequence[ConvUnit], statistic: str) -> torch.Tensor:
    """``statistic`` of each channel's filter weights, over all convolutions."""
    return torch.cat([channel_statistic(unit.conv.weight, statistic).cpu() for unit in units])


def relevance_samples(data: DatasetSplits, settings: RelevanceSettings) -> torch.Tensor:
    """The first ``eval_samples`` inputs of the configured split."""
    return getattr(data, f"x_{settings.split}")[: settings.eval_samples]


def channel_scores(
    model: nn.Module, units: Sequence[ConvUnit], data: DatasetSplits, settings: RelevanceSettings
) -> ChannelScores:
    """Score every channel of ``model`` (already on its device, as ``data`` is), normalised per layer."""
    from tuneprune.relevance.lrp import mean_channel_relevance  # zennit loads only when relevance is computed

    maps = mean_channel_relevance(model, units, relevance_samples(data, settings), settings)
    relevance = torch.cat([channel_statistic(m, settings.statistic).cpu() for m in maps])
    parameter = parameter_scores(units, settings.parameter_statistic)
    return ChannelScores(
        normalize_scores(relevance, units, settings.normalize),
        normalize_scores(parameter, units, settings.parameter_normalize),
    )
