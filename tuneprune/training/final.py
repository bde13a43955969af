"""Evaluations a run config asks for once training is over."""

from __future__ import annotations

from tuneprune.training.loop import TrainResult


def final_evaluations(result: TrainResult) -> dict[str, float]:
    """Run the post-training evaluations of ``result.config`` and add them to its last epoch.

    Today that is the optional ``relevance:`` pruning point (SPEC 6): the trained model with
    that percentage of its convolution channels pruned, without retraining, giving
    ``pruned_acc``, ``pruned_loss`` and ``pruned_fraction``. The model is left unpruned.
    """
    config = result.config
    if config.relevance is None:
        return {}
    from tuneprune.data import load_dataset
    from tuneprune.relevance import evaluate_channel_pruning

    metrics = evaluate_channel_pruning(result.model, load_dataset(config), config.relevance, config.eval_batch_size)
    result.model.cpu()
    result.history[-1].update(metrics)
    return metrics
