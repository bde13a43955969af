"""Training loop (formulas §1.6): dense or sparse, checkpointed, resumable, seeded."""

from tuneprune.training.checkpoint import load_model, save_model
from tuneprune.training.config import RunConfig
from tuneprune.training.evaluate import evaluate
from tuneprune.training.loop import TrainingDiverged, TrainResult, resolve_device, train

__all__ = [
    "RunConfig",
    "TrainResult",
    "TrainingDiverged",
    "evaluate",
    "load_model",
    "resolve_device",
    "save_model",
    "train",
]
