"""Which trials a fit may learn from (formulas §2, formulas §3): those that reached their target and learned something.

A trial whose achieved sparsity (the ``sparsity`` metric at its last epoch: the fraction of prunable weights that are
zero) stayed below its target by more than ``sparsity_tolerance`` says nothing about that target; a trial whose
accuracy is within ``chance_margin`` of chance (``1 / number of classes``) says nothing about its hyperparameters.
``fit-alpha`` and ``fit-scheduler`` leave both out and print why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tuneprune.data.splits import CLASSES


def accuracy_metric(objectives: Iterable[str]) -> str:
    """The accuracy a search is judged by (its fronts, and which trials are near chance): its first objective that is
    an accuracy (``*_acc``), else ``val_acc``."""
    return next((m for m in objectives if m.endswith("_acc")), "val_acc")


def chance_accuracy(config: dict[str, Any]) -> float:
    """``1 / classes`` of the dataset a run config (as a dict) trains on."""
    return 1.0 / CLASSES.get(config.get("dataset", "digits"), config.get("synthetic_classes", 10))


@dataclass(frozen=True)
class UsabilityRules:
    """The two thresholds, in the units of sparsity and of accuracy."""

    sparsity_tolerance: float = 0.001
    chance_margin: float = 0.1

    def describe(self) -> str:
        return (
            f"a trial is used when its achieved sparsity >= target - {self.sparsity_tolerance:g} "
            f"and its accuracy >= chance (1/classes) + {self.chance_margin:g}"
        )

    def reason(
        self, target: float, achieved: float | None, accuracy: float | None, chance: float, metric: str
    ) -> str | None:
        """Why a trial is left out, or ``None`` when it is usable."""
        if achieved is None:
            return "achieved sparsity not recorded"
        if achieved < target - self.sparsity_tolerance:
            return f"target not reached: sparsity {achieved:.4f} < {target:g} - {self.sparsity_tolerance:g}"
        if accuracy is None:
            return f"{metric} not recorded"
        if accuracy < chance + self.chance_margin:
            return f"near chance: {metric} {accuracy:.4f} < chance {chance:.3g} + {self.chance_margin:g}"
        return None


DEFAULT_RULES = UsabilityRules()
