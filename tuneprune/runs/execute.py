"""One trial from start to end: train, the final evaluations its spec asks for, the saved model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuneprune.data import load_dataset
from tuneprune.relevance.evaluation import evaluate_channel_pruning
from tuneprune.runs.spec import TrialSpec
from tuneprune.sparsity import prunable_sparsity
from tuneprune.training import TrainResult, save_model, train
from tuneprune.training.checkpoint import MODEL_NAME

FinalMetricsLog = Callable[[dict[str, float], int], None]


@dataclass
class Executed:
    """A finished trial: the training result, its summary (last epoch, final evaluations, final sparsity)
    and the saved model file (``None`` without an output directory)."""

    result: TrainResult
    summary: dict[str, float]
    model_path: Path | None


def execute(
    spec: TrialSpec,
    out: Path | None,
    tracker: FinalMetricsLog | None = None,
    *,
    resume_from: Path | None = None,
    progress: bool = False,
) -> Executed:
    """Train ``spec`` (checkpoints in ``out``), then :func:`conclude` it."""
    result = train(spec, checkpoint_dir=out, resume_from=resume_from, progress=progress)
    return conclude(spec, result, out, tracker)


def conclude(
    spec: TrialSpec, result: TrainResult, out: Path | None, tracker: FinalMetricsLog | None = None
) -> Executed:
    """Run the final evaluations of a trained ``spec`` and save ``out/model.pt``.

    The final evaluation is the optional ``relevance:`` pruning point of :class:`TrialSpec`
    (formulas §6; the model is left unpruned): its metrics are added to the last epoch of
    ``result.history`` and given to ``tracker(metrics, epochs)`` (logged at the last epoch's
    step). The summary is the last epoch's metrics and, for a sparse run, ``final_sparsity``:
    the achieved sparsity of the finalized model. A trial trained alone and a member of a
    pack (:mod:`tuneprune.training`) end here alike.
    """
    evaluations: dict[str, float] = {}
    if spec.relevance is not None:
        evaluations = evaluate_channel_pruning(result.model, load_dataset(spec), spec.relevance, spec.eval_batch_size)
        result.model.cpu()
        result.history[-1].update(evaluations)
    if tracker is not None:
        tracker(evaluations, spec.epochs)
    summary = dict(result.final)
    if spec.sparsity is not None:
        summary["final_sparsity"] = prunable_sparsity(result.model, spec.sparsity.min_size)
    model_path = None
    if out is not None:
        config = spec.model_dump(mode="json")
        model_path = save_model(result.model, config, out / MODEL_NAME, result.num_classes, result.in_channels, summary)
    return Executed(result, summary, model_path)
