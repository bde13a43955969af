"""One trial from start to end: train, the final evaluations its spec asks for, the saved model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tuneprune.data import load_dataset
from tuneprune.relevance.evaluation import evaluate_channel_pruning
from tuneprune.runs.spec import TrialSpec
from tuneprune.sparsity import prunable_sparsity
from tuneprune.training import TrainResult, save_model, train
from tuneprune.training.checkpoint import MODEL_NAME
from tuneprune.training.loop import EpochCallback

FinalMetricsLog = Callable[[dict[str, float], int], None]


@dataclass
class Executed:
    """A finished trial: the training result, its summary (last epoch, final evaluations, final sparsity)
    and the saved model file (``None`` without an output directory)."""

    result: TrainResult
    summary: dict[str, float]
    model_path: Path | None


def final_evaluations(spec: TrialSpec, result: TrainResult) -> dict[str, float]:
    """The post-training evaluations of ``spec``, added to the last epoch of ``result.history``.

    Today that is the optional ``relevance:`` pruning point (formulas §6): the trained model with
    that percentage of its convolution channels pruned, without retraining, giving
    ``pruned_acc``, ``pruned_loss`` and ``pruned_fraction``. The model is left unpruned.
    """
    if spec.relevance is None:
        return {}
    metrics = evaluate_channel_pruning(result.model, load_dataset(spec), spec.relevance, spec.eval_batch_size)
    result.model.cpu()
    result.history[-1].update(metrics)
    return metrics


def execute(
    spec: TrialSpec,
    out: Path | None,
    tracker: FinalMetricsLog | None = None,
    *,
    callbacks: Sequence[EpochCallback] = (),
    resume_from: Path | None = None,
    progress: bool = False,
) -> Executed:
    """Train ``spec`` (checkpoints in ``out``), then :func:`conclude` it."""
    result = train(spec, callbacks=callbacks, checkpoint_dir=out, resume_from=resume_from, progress=progress)
    return conclude(spec, result, out, tracker)


def conclude(
    spec: TrialSpec, result: TrainResult, out: Path | None, tracker: FinalMetricsLog | None = None
) -> Executed:
    """Run the final evaluations of a trained ``spec`` and save ``out/model.pt``.

    ``tracker(metrics, epochs)`` receives the final evaluations (logged at the last epoch's
    step). The summary is the last epoch's metrics with the final evaluations and, for a
    sparse run, ``final_sparsity``: the achieved sparsity of the finalized model. A trial
    trained alone and a member of a pack (:mod:`tuneprune.training`) end here alike.
    """
    evaluations = final_evaluations(spec, result)
    if tracker is not None:
        tracker(evaluations, spec.epochs)
    summary = dict(result.final)
    if spec.sparsity is not None:
        summary["final_sparsity"] = prunable_sparsity(result.model, spec.sparsity.min_size)
    model_path = None
    if out is not None:
        config = spec.model_dump(mode="json")
        model_path = save_model(
            result.model, config, Path(out) / MODEL_NAME, result.num_classes, result.in_channels, summary
        )
    return Executed(result, summary, model_path)
