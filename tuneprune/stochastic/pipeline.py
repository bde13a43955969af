"""One Stochastic Pruning point end to end: deterministic baseline, best of n samples, fine-tuning, variance (formulas §5),
from a config file to its files (what ``tuneprune prune-stochastic`` runs)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from tuneprune.data import DatasetSplits, check_data_dir
from tuneprune.output.plotting import new_figure, save_figure
from tuneprune.output.progress import say
from tuneprune.output.summaries import write_rows, write_summary
from tuneprune.shared.config import load_config
from tuneprune.sparsity import prunable_layers
from tuneprune.sparsity.layers import PrunableLayer
from tuneprune.stochastic.config import FinetuneConfig, StochasticConfig
from tuneprune.stochastic.dense import dense_model_and_data
from tuneprune.stochastic.pruning import Pruner, derive_seed, score_samples, sparsities, target_layers
from tuneprune.training import RunConfig, evaluate, train, untrained_model
from tuneprune.training.evaluate import eval_mode
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


@torch.no_grad()
def feature_variance(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> dict[str, float]:
    """Per Conv2d/Linear output: the variance of each channel over (batch, H, W), summed over channels,
    averaged over the batches of ``x`` (formulas §5, "variance explosion"). Population variance; eval mode."""
    names: dict[nn.Module, str] = {module: name for name, module in prunable_layers(model)}
    totals: dict[str, torch.Tensor] = {}

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        channels = output.detach().transpose(0, 1).reshape(output.shape[1], -1)
        name = names[module]
        totals[name] = totals.get(name, 0) + channels.var(dim=1, correction=0).sum()

    handles = [module.register_forward_hook(record) for module in names]
    starts = range(0, len(x), batch_size)
    try:
        with eval_mode(model):
            for i in starts:
                model(x[i : i + batch_size])
    finally:
        for handle in handles:
            handle.remove()
    return {name: float(total) / max(len(starts), 1) for name, total in totals.items()}


def plot_feature_variance(table: Mapping[str, Mapping[str, float]], path: str | Path) -> Path:
    """Line plot of ``table`` (layer -> model -> variance), one line per model, log scale (Agg backend)."""
    layers = list(table)
    fig, (ax,) = new_figure(width=max(6.0, 0.35 * len(layers)), height=4.0, grid=False)
    for label in next(iter(table.values())):
        ax.plot(range(len(layers)), [table[name][label] for name in layers], marker="o", label=label)
    ax.set_yscale("log")
    ax.set_xticks(range(len(layers)), layers, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("feature variance (sum over channels)")
    ax.set_title("Feature variance per layer")
    ax.legend()
    return save_figure(fig, path)


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
    model.to(data.x_val.device)
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


def prune_stochastic(
    config_path: Path,
    overrides: list[str] | None,
    *,
    checkpoint: Path | None = None,
    from_run: str | None = None,
    tracking_uri: str | None = None,
    out: Path | None = None,
    progress: bool = True,
) -> tuple[StochasticReport, Path]:
    """Validate the config, get the dense model (file, MLflow run or trained now), prune, write the outputs.

    Returns the report and the directory it was written to (``out``, default ``runs/<config name>``):
    ``report.json``, and ``feature_variance.csv`` and ``.png`` when the variance is measured (else those of an
    earlier run there are removed).
    """
    config = load_config(StochasticConfig, config_path, overrides)
    check_data_dir(config.train.dataset, config.train.data_dir, config.train.download)
    if checkpoint is None and from_run is None:  # the layers the target names, checked before the model trains
        target_layers(untrained_model(config.train), config.target)
    if progress:
        say("loading the dense model ..." if checkpoint or from_run else "training the dense model ...")
    model, run_config, data = dense_model_and_data(config.train, checkpoint, from_run, tracking_uri, progress)
    if progress:
        say(
            f"pruning: {config.samples} noisy samples at rate {config.rate:g}, then {config.finetune.epochs} fine-tuning epochs ..."
        )
    report = run_stochastic(config, model, run_config, data)
    out = (out or Path("runs") / Path(config_path).stem).resolve()
    out.mkdir(parents=True, exist_ok=True)
    write_summary(report, out / "report.json")
    csv_path, png_path = out / "feature_variance.csv", out / "feature_variance.png"
    if report.feature_variance:
        table = report.feature_variance  # layer -> model label -> variance
        write_rows([{"layer": layer, **values} for layer, values in table.items()], csv_path)
        plot_feature_variance(table, png_path)
    else:  # not measured: an earlier run's table and plot in the same directory are not this run's
        for path in (csv_path, png_path):
            path.unlink(missing_ok=True)
    return report, out
