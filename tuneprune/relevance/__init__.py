"""Relevance-based channel pruning (SPEC 6): LRP vs parameter magnitude, combined and delta-mixed.

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

Names are imported on first use, so ``tuneprune.relevance.settings`` can be embedded in
the run config without importing torch-heavy modules (or ``tuneprune.training``) here.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "mixed_order": "rankings",
    "combined_order": "rankings",
    "build_rankings": "rankings",
    "evaluate_channel_pruning": "evaluation",
    "RelevanceSettings": "settings",
    "PruningPoint": "settings",
    "RelevanceStudyConfig": "config",
    "run_study": "study",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
