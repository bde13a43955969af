"""Relevance-based channel pruning (formulas §6): LRP vs parameter magnitude, combined and delta-mixed.

- :mod:`~tuneprune.relevance.lrp`: per-channel LRP relevance with zennit (epsilon, gamma,
  alpha2beta1), a running mean over batches; :mod:`~tuneprune.relevance.canonizers` the
  residual-sum canonizer zennit lacks for our ResNets.
- :mod:`~tuneprune.relevance.statistics`, :mod:`~tuneprune.relevance.scores`: channel
  scores from relevance maps and filter weights.
- :mod:`~tuneprune.relevance.rankings`: relevance, parameter, random, combined and
  :func:`mixed_order` (the delta walk).
- :mod:`~tuneprune.relevance.channels`: convolution channels, selection at a percentage
  (global or per layer, never a layer's last channel), pruning by zeroing.
- :mod:`~tuneprune.relevance.evaluation`: :func:`evaluate_channel_pruning`, the metrics
  a search trial reports; :mod:`~tuneprune.relevance.study`, ``report``, ``tracking``,
  ``finetune``: the ``tuneprune relevance`` command's curves, CSV, plots and MLflow runs.
"""

from tuneprune.relevance.evaluation import evaluate_channel_pruning
from tuneprune.relevance.rankings import combined_order, mixed_order
from tuneprune.relevance.settings import PruningPoint

__all__ = ["PruningPoint", "combined_order", "evaluate_channel_pruning", "mixed_order"]
