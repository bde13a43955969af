"""Channel scores made comparable across layers, for the global scope of formulas §6 (formulas §10.4: raw
scores shrink with a layer's size, measured in docs/relevance.md with ``scripts/relevance_layers.py``).

Per layer ``l`` with ``n_l`` channels and scores ``s`` (``RelevanceSettings.normalize`` for relevance,
``parameter_normalize`` for parameter magnitude):

- ``none``: the raw scores, compared directly.
- ``layer_share``: ``s_c / sum_l(s) * n_l``, the channel's share of its layer's total scaled
  by the layer's channel count (1 for a channel of average score).
- ``layer_max``: ``s_c / max_l(s)``, the score relative to the layer's best channel.

A positive per-layer scale never changes the order within a layer, so only the global
scope is affected.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tuneprune.relevance.channels import ConvUnit
from tuneprune.relevance.settings import Normalization


def normalize_scores(scores: torch.Tensor, units: Sequence[ConvUnit], normalization: Normalization) -> torch.Tensor:
    """``scores`` (global channel order) divided layer by layer by 1, the layer mean or the layer max (1 where that
    is 0), as ``normalization`` says."""
    parts = [scores[u.offset : u.offset + u.size] for u in units]
    if normalization == "none":
        return torch.cat(parts)
    scales = [part.mean() if normalization == "layer_share" else part.max() for part in parts]
    return torch.cat([part / (scale if scale > 0 else 1.0) for part, scale in zip(parts, scales, strict=True)])
