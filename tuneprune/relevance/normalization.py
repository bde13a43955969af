"""Channel scores made comparable across layers, for the global scope of formulas §6.

Why raw scores are not comparable (measured on ``configs/relevance_digits.yaml``, see the
README and ``scripts/relevance_layers.py``):

- Relevance: LRP conserves the total relevance layer by layer (about 7 units of |R| in each
  of small_cnn's three convolutions), and the channel score is the mean of |R| over the
  channel's map. A channel's score is therefore about ``layer total / (channels * H * W)``:
  it shrinks with the layer's channel count *and* with its map size. ``features.3`` (64
  channels on 8x8 maps, before the max-pool) gets 1.9e-3 per channel against 3.3e-3
  (``features.0``, 32 channels, 8x8) and 3.7e-3 (``features.7``, 128 channels, 4x4), so the
  raw global ranking empties ``features.3`` first (17 of its 64 channels at 10 %, 36 at 20 %,
  63 at 40 %) and falls below the random control.
- Parameter magnitude: initialisation scales filters with ``1 / sqrt(fan_in)``, so the mean
  |w| of a channel is 0.17 in ``features.0`` (fan-in 9), 0.032 in ``features.3`` (288) and
  0.022 in ``features.7`` (576): the raw ranking takes only ``features.7`` channels up to
  50 %, and at 60 % leaves it one channel (accuracy 0.997 -> 0.103).

Normalisations (``RelevanceSettings.normalize`` for relevance, ``parameter_normalize`` for
parameter magnitude), applied per layer ``l`` with ``n_l`` channels and scores ``s``:

- ``none``: the raw scores, compared directly.
- ``layer_share``: ``s_c / sum_l(s) * n_l``, the channel's share of its layer's total scaled
  by the layer's channel count (1 for a channel of average score).
- ``layer_max``: ``s_c / max_l(s)``, the score relative to the layer's best channel.

A positive per-layer scale never changes the order within a layer, so only the global
scope is affected. On the digits example ``layer_max`` serves relevance best and ``none``
serves parameter magnitude best (emptying the cheap wide last layer first is what keeps
the parameter ranking near the unpruned accuracy up to 50 %): those are the defaults.
The global scope's floor (``min_layer_share``, :func:`~tuneprune.relevance.channels.select_channels`)
keeps any of them from emptying a layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tuneprune.relevance.channels import ConvUnit
from tuneprune.relevance.settings import Normalization


def layer_scale(values: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """The divisor of one layer's scores: 1, the layer mean or the layer max (1 where that is 0)."""
    if normalization == "layer_share":
        scale = values.mean()
    elif normalization == "layer_max":
        scale = values.max()
    else:
        return torch.ones(())
    return scale if scale > 0 else torch.ones(())


def normalize_scores(scores: torch.Tensor, units: Sequence[ConvUnit], normalization: Normalization) -> torch.Tensor:
    """``scores`` (global channel order) divided layer by layer as ``normalization`` says."""
    parts = [scores[u.offset : u.offset + u.size] for u in units]
    return torch.cat([part / layer_scale(part, normalization) for part in parts])
