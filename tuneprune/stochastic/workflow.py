"""One Stochastic Pruning point from a config file to its files: what ``tuneprune prune-stochastic`` runs."""

from __future__ import annotations

from pathlib import Path

from tuneprune.data import check_data_dir
from tuneprune.output.progress import say
from tuneprune.output.summaries import write_rows, write_summary
from tuneprune.shared.config import load_config
from tuneprune.stochastic.config import StochasticConfig
from tuneprune.stochastic.dense import dense_model_and_data
from tuneprune.stochastic.pipeline import StochasticReport, run_stochastic
from tuneprune.stochastic.pruning import target_layers
from tuneprune.stochastic.variance import plot_feature_variance
from tuneprune.training import untrained_model


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
    ``report.json``, and ``feature_variance.csv`` and ``.png`` when the variance is measured.
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
    if report.feature_variance:
        table = report.feature_variance  # layer -> model label -> variance
        write_rows([{"layer": layer, **values} for layer, values in table.items()], out / "feature_variance.csv")
        plot_feature_variance(table, out / "feature_variance.png")
    return report, out
