"""Packed trials: K trials of one search trained together in one process on one device.

Members share the model architecture, dataset, batch size and epochs
(:func:`check_packable`) and differ in everything a search varies; each trains exactly
the trial :func:`tuneprune.training.train` would train alone.
"""

from tuneprune.packing.checkpoint import MemberState, load_member, save_member
from tuneprune.packing.key import check_packable, pack_key
from tuneprune.packing.trainer import MemberResult, PackedTrainer, train_packed

__all__ = [
    "MemberResult",
    "MemberState",
    "PackedTrainer",
    "check_packable",
    "load_member",
    "pack_key",
    "save_member",
    "train_packed",
]
