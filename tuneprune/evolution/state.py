"""The evolution's checkpoint: pymoo's algorithm object, the archive and the RNG state, written atomically.

Written after every generation with write-then-rename (:func:`save_atomic`). The
algorithm holds pymoo's own random generator; the global NumPy state is saved too. The
payload is a cloudpickle (pymoo's decorated operators do not pickle by reference).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
from pymoo.core.algorithm import Algorithm

from tuneprune.shared.config import ConfigError
from tuneprune.training.checkpoint import load_file, save_atomic

STATE_NAME = "state.pt"
FORMAT = "tuneprune-evolution-v1"


@dataclass
class EvolutionState:
    """Where an evolution stands after ``generation`` completed generations."""

    fingerprint: str
    algorithm: Algorithm
    generation: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    hypervolume: list[float] = field(default_factory=list)

    def save(self, path: str | Path) -> Path:
        blob = cloudpickle.dumps({"state": self, "numpy_rng": np.random.get_state()})
        return save_atomic({"format": FORMAT, "generation": self.generation, "blob": blob}, path)

    @staticmethod
    def load(path: str | Path) -> EvolutionState:
        """Read a checkpoint and restore the global NumPy RNG state it recorded."""
        obj = load_file(path)
        if obj.get("format") != FORMAT:
            raise ConfigError(f"{path}: not a tuneprune evolution checkpoint")
        data = cloudpickle.loads(obj["blob"])
        np.random.set_state(data["numpy_rng"])
        return data["state"]
