"""Relevance-based channel pruning (formulas §6): LRP vs parameter magnitude, combined and delta-mixed.

Channels are scored (:mod:`~tuneprune.relevance.lrp` with zennit, :mod:`~tuneprune.relevance.scores`),
ranked (:mod:`~tuneprune.relevance.rankings`), pruned by zeroing (:mod:`~tuneprune.relevance.channels`)
and evaluated without retraining: one point for a search trial (:func:`evaluate_channel_pruning`) or
the curves, CSV, plots and MLflow runs of ``tuneprune relevance`` (:mod:`~tuneprune.relevance.study`).
"""

from tuneprune.relevance.evaluation import evaluate_channel_pruning
from tuneprune.relevance.rankings import combined_order, mixed_order
from tuneprune.relevance.settings import PruningPoint

__all__ = ["PruningPoint", "combined_order", "evaluate_channel_pruning", "mixed_order"]
