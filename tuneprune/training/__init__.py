"""Training (formulas §1.6): one loop for one run or a pack of K trials, dense or sparse, checkpointed, resumable.

A run (:func:`train`) is a pack of one: :class:`PackedTrainer` trains K trials of one
search together in one process on one device (members share what :func:`check_packable`
names and differ in everything a search varies), each exactly as it trains alone.
"""

from tuneprune.training.checkpoint import MemberState, load_member, load_model, save_member, save_model
from tuneprune.training.config import RunConfig
from tuneprune.training.evaluate import evaluate
from tuneprune.training.key import check_packable, pack_key
from tuneprune.training.loop import train, untrained_model
from tuneprune.training.trainer import (
    MemberResult,
    PackedTrainer,
    TrainingDiverged,
    TrainResult,
    resolve_device,
    train_packed,
)

__all__ = [
    "MemberResult",
    "MemberState",
    "PackedTrainer",
    "RunConfig",
    "TrainResult",
    "TrainingDiverged",
    "check_packable",
    "evaluate",
    "load_member",
    "load_model",
    "pack_key",
    "resolve_device",
    "save_member",
    "save_model",
    "train",
    "train_packed",
    "untrained_model",
]
