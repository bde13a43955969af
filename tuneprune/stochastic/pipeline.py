"""One Stochastic Pruning point end to end: deterministic baseline, best of n samples, fine-tuning, variance (formulas §5)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from tuneprune.data import DatasetSplits
from tuneprune.sparsity.layers import PrunableLayer
from tuneprune.stochastic.config import FinetuneConfig, StochasticConfig
from tuneprune.stochastic.pruning import Pruner, derive_seed, score_samples, sparsities, target_layers
from tuneprune.stochastic.variance import feature_variance
from tuneprune.training import RunConfig, evaluate, train
from tuneprune.training.hooks import FrozenWeights


@dataclass
class StochasticReport:
    """Accuracies of the dense, deterministic and best stochastic models; formulas §5 quantities.

    ``sample_val_acc`` holds the validation accuracy of every sample; ``best_sample`` and
    ``best_seed`` re-create the chosen one (``Pruner.apply(sigma, rate, best_seed)``).
    ``pruned_layers_sparsity`` is the sparsity of the layers the rate prunes (what it
    controls), ``model_sparsity`` that of every prunable weight (see
    :func:`~tuneprune.stochastic.pruning.sparsities`); ``deterministic`` and ``stochastic``
    carry both too. ``finetuned`` maps ``deterministic``/``stochastic`` to metrics after fine-tuning;
    ``feature_variance`` maps a layer to its variance in each of the three models.
    """

    sigma: float
    rate: float
    samples: int
    pruned_layers_sparsity: float
    model_sparsity: float
    dense: dict[str, float]
    deterministic: dict[str, float]
    stochastic: dict[str, float]
    best_sample: int
    best_seed: int
    sample_val_acc: list[float]
    finetuned: dict[str, dict[str, float]] = field(default_factory=dict)
    feature_variance: dict[str, dict[str, float]] = field(default_factory=dict)


def accuracies(model: nn.Module, data: DatasetSplits, batch_size: int) -> dict[str, float]:
    """``val_acc`` and ``test_acc`` of ``model``: how a dense or pruned model is reported."""
    return {
        "val_acc": evaluate(model, data.x_val, data.y_val, batch_size)[0],
        "test_acc": evaluate(model, data.x_test, data.y_test, batch_size)[0],
    }


def finetune(
    model: nn.Module,
    modules: Sequence[PrunableLayer],
    masks: Sequence[torch.Tensor],
    data: DatasetSplits,
    run_config: RunConfig,
    settings: FinetuneConfig,
) -> dict[str, float]:
    """Fine-tune ``model`` in place (formulas §5: SGD, constant lr, no clipping); returns the last epoch's metrics.

    The mask is held fixed (a :class:`FrozenWeights` hook keeps every pruned weight at zero) and BatchNorm
    frozen. The model stays on the device it was on.
    """
    device = next(model.parameters()).device
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    for norm in norms:
        norm.requires_grad_(False)
    config = run_config.model_copy(
        update={
            "epochs": settings.epochs,
            "lr": settings.lr,
            "momentum": settings.momentum,
            "nesterov": False,
            "weight_decay": settings.weight_decay,
            "batch_size": settings.batch_size,
            "lr_schedule": "constant",
            "grad_clip": None,
            "sparsity": None,
        }
    )
    frozen = [(module.weight, ~mask.bool()) for module, mask in zip(modules, masks, strict=True)]
    result = train(config, model=model, data=data, hooks=[FrozenWeights(frozen, norms)])
    model.to(device)
    return result.final


def run_stochastic(
    config: StochasticConfig, model: nn.Module, run_config: RunConfig, data: DatasetSplits
) -> StochasticReport:
    """Prune ``model`` (the dense model ``run_config`` trained; modified in place) at ``config.rate``.

    The deterministic baseline prunes the dense weights; each of ``config.samples``
    samples prunes noisy weights (noise seed ``derive_seed(config.seed, i)``); the best on
    the validation split is reported on the test split. Feature variance is measured on
    the validation split.
    """
    batch = run_config.eval_batch_size
    device = data.x_val.device
    model.to(device)
    dense = accuracies(model, data, batch)
    dense_copy = copy.deepcopy(model) if config.feature_variance else None
    layers = target_layers(model, config.target)
    pruner = Pruner(layers)

    det_masks = pruner.apply(0.0, config.rate)
    deterministic = {**accuracies(model, data, batch), **sparsities(model, pruner.modules, config.target.min_size)}
    det_model = copy.deepcopy(model)

    seeds = [derive_seed(config.seed, i) for i in range(config.samples)]
    val_accs = score_samples(model, pruner, data.x_val, data.y_val, config.sigma, config.rate, seeds, batch)
    best = max(range(len(seeds)), key=lambda i: val_accs[i])
    masks = pruner.apply(config.sigma, config.rate, seeds[best])
    stochastic = {**accuracies(model, data, batch), **sparsities(model, pruner.modules, config.target.min_size)}

    report = StochasticReport(
        config.sigma, config.rate, config.samples, deterministic["pruned_layers_sparsity"], deterministic["model_sparsity"],
        dense, deterministic, stochastic, best, seeds[best], val_accs,
    )  # fmt: skip
    if dense_copy is not None:
        models = {"dense": dense_copy, "deterministic": det_model, "stochastic": model}
        per_model = {label: feature_variance(m, data.x_val, batch) for label, m in models.items()}
        report.feature_variance = {layer: {k: v[layer] for k, v in per_model.items()} for layer in per_model["dense"]}
    if config.finetune.epochs > 0:
        det_modules = [dict(det_model.named_modules())[name] for name, _ in layers]
        for label, target, target_modules, target_masks in (
            ("deterministic", det_model, det_modules, det_masks),
            ("stochastic", model, pruner.modules, masks),
        ):
            final = finetune(target, target_modules, target_masks, data, run_config, config.finetune)
            report.finetuned[label] = {"val_acc": final["val_acc"], "test_acc": final["test_acc"]}
    return report
