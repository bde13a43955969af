"""Accuracy and loss of channel-pruned models without retraining (formulas §6).

The channels are scored once (:func:`prepare`) and pruned at each point to evaluate;
:func:`evaluate_channel_pruning` is the one point a search trial evaluates after training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch.nn as nn

from tuneprune.data import DatasetSplits
from tuneprune.relevance.channels import ConvUnit, channels_pruned, conv_units, select_channels
from tuneprune.relevance.rankings import build_rankings
from tuneprune.relevance.scores import ChannelScores, channel_scores
from tuneprune.relevance.settings import PruningPoint, RelevanceSettings
from tuneprune.training import resolve_device
from tuneprune.training.evaluate import evaluate


@dataclass
class Prepared:
    """A trained model and its data on one device, with its channels and their scores."""

    model: nn.Module
    data: DatasetSplits
    units: list[ConvUnit]
    scores: ChannelScores
    eval_batch_size: int

    @property
    def num_channels(self) -> int:
        return len(self.scores.relevance)

    def test_metrics(self, model: nn.Module | None = None) -> tuple[float, float]:
        """``(accuracy, loss)`` of ``model`` (default: the prepared one) on the test split."""
        return evaluate(model or self.model, self.data.x_test, self.data.y_test, self.eval_batch_size)


def prepare(
    model: nn.Module, data: DatasetSplits, settings: RelevanceSettings, eval_batch_size: int = 1024
) -> Prepared:
    """Move ``model`` (in place) and ``data`` to ``settings.device`` and score every channel."""
    device = resolve_device(settings.device)
    model = model.to(device)
    data = data.to(device)
    units = conv_units(model)
    return Prepared(model, data, units, channel_scores(model, units, data, settings), eval_batch_size)


def evaluate_pruned(prepared: Prepared, channels: Sequence[int]) -> tuple[float, float]:
    """Test ``(accuracy, loss)`` with ``channels`` pruned; the model is restored afterwards."""
    with channels_pruned(prepared.units, channels):
        return prepared.test_metrics()


def evaluate_channel_pruning(
    model: nn.Module, data: DatasetSplits, settings: PruningPoint, eval_batch_size: int = 1024
) -> dict[str, float]:
    """Prune ``settings.percentage`` % of the channels of a trained model by its ranking.

    Returns ``pruned_acc`` and ``pruned_loss`` (test split, no retraining) and
    ``pruned_fraction`` (channels actually pruned over all channels, below the request
    only where a layer would fall below its floor: one channel, and in the global scope
    ``min_layer_share`` of its channels). ``model`` moves to the device.
    """
    prepared = prepare(model, data, settings, eval_batch_size)
    names, deltas = ([], [settings.delta]) if settings.ranking == "mixed" else ([settings.ranking], [])
    scores = prepared.scores
    (order,) = build_rankings(scores.relevance, scores.parameter, names, deltas, settings.seed).values()
    channels = select_channels(order, prepared.units, settings.percentage, settings.scope, settings.min_layer_share)
    acc, loss = evaluate_pruned(prepared, channels)
    return {"pruned_acc": acc, "pruned_loss": loss, "pruned_fraction": len(channels) / prepared.num_channels}
