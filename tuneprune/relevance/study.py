"""The curves of ``tuneprune relevance`` (formulas §6): every ranking and every delta at every percentage.

One relevance pass scores the channels; each ranking is then pruned at each percentage
and evaluated without retraining, and optionally after fine-tuning with the mask fixed.
A curve is handed to ``on_curve`` as soon as it is complete, so a long study can be
tracked while it runs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch.nn as nn

from tuneprune.data import DatasetSplits
from tuneprune.relevance.channels import conv_units, prune_channels, pruned_entries, select_channels
from tuneprune.relevance.config import FinetuneSettings, RelevanceStudyConfig
from tuneprune.relevance.evaluation import Prepared, evaluate_pruned, prepare
from tuneprune.relevance.rankings import build_rankings
from tuneprune.training.config import RunConfig
from tuneprune.training.hooks import FrozenWeights
from tuneprune.training.loop import train

Row = dict[str, float]
CurveCallback = Callable[[str, list[Row]], None]


@dataclass
class StudyResult:
    """The unpruned test metrics and one curve (rows by percentage) per ranking."""

    num_channels: int
    baseline: dict[str, float]
    curves: dict[str, list[Row]] = field(default_factory=dict)


def finetune_pruned(
    model: nn.Module, channels: Sequence[int], data: DatasetSplits, run_config: RunConfig, settings: FinetuneSettings
) -> nn.Module:
    """A copy of ``model`` with ``channels`` pruned, trained ``settings.epochs`` more epochs, on the CPU on return.

    The recipe is ``run_config``'s (the model's own) with the fine-tuning epochs, learning rate and batch size,
    dense (no sparsity engine); a :class:`FrozenWeights` hook holds the pruned tensors at exactly zero. ``model``
    itself is left untouched.
    """
    tuned = copy.deepcopy(model)
    units = conv_units(tuned)
    prune_channels(units, channels)
    config = run_config.model_copy(
        update={"epochs": settings.epochs, "lr": settings.lr, "batch_size": settings.batch_size, "sparsity": None}
    )
    return train(config, model=tuned, data=data, hooks=[FrozenWeights(pruned_entries(units, channels))]).model


def _point(
    prepared: Prepared, order: list[int], percentage: int, config: RelevanceStudyConfig, run_config: RunConfig
) -> Row:
    """Prune the lowest ``percentage`` % of ``order``, evaluate, optionally fine-tune and evaluate again."""
    channels = select_channels(
        order, prepared.units, percentage, config.relevance.scope, config.relevance.min_layer_share
    )
    acc, loss = evaluate_pruned(prepared, channels)
    row = {"percentage": percentage, "pruned_channels": len(channels), "acc": acc, "loss": loss}
    if config.finetune.epochs:
        tuned = finetune_pruned(prepared.model, channels, prepared.data, run_config, config.finetune)
        row["finetuned_acc"], row["finetuned_loss"] = prepared.test_metrics(tuned.to(prepared.data.x_test.device))
    return row


def run_study(
    model: nn.Module,
    run_config: RunConfig,
    data: DatasetSplits,
    config: RelevanceStudyConfig,
    on_curve: CurveCallback | None = None,
) -> StudyResult:
    """Score, rank and prune ``model`` (trained with ``run_config``) as ``config`` asks."""
    prepared = prepare(model, data, config.relevance, run_config.eval_batch_size)
    acc, loss = prepared.test_metrics()
    result = StudyResult(prepared.num_channels, {"acc": acc, "loss": loss})
    scores = prepared.scores
    rankings = build_rankings(scores.relevance, scores.parameter, config.rankings, config.deltas, config.relevance.seed)
    tune_config = run_config.model_copy(update={"device": config.relevance.device})
    for name, order in rankings.items():
        result.curves[name] = [_point(prepared, order, p, config, tune_config) for p in config.percentages]
        if on_curve is not None:
            on_curve(name, result.curves[name])
    return result
