"""Magnitude thresholds: the S-quantile of |w| over the network or per layer (SPEC 1.4).

The value equals ``torch.quantile`` (linear interpolation between the two neighbouring
order statistics) but no full sort is done: on the CPU an in-place ``numpy`` partition
(quickselect) plus the minimum of the upper part, on an accelerator ``kthvalue``. Nothing
here forces a host-device sync.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tuneprune.sparsity.kernels import abs_into, copy_into, on_numpy


def _position(q: float, n: int) -> tuple[int, float]:
    """Lower order statistic and interpolation weight of quantile ``q`` of ``n`` values."""
    pos = q * (n - 1)
    lower = min(int(pos), n - 1)
    return lower, pos - lower


def _pairs_by_partition(values: np.ndarray, lowers: set[int]) -> dict[int, tuple[float, float]]:
    """Order statistics ``(x_(r), x_(r+1))`` for each ``r``; partitions ``values`` in place.

    Ranks are taken from the largest down, each partition working on the prefix left by
    the previous one; ``x_(r+1)`` is the minimum of the part above ``r`` in that prefix.
    """
    pairs = {}
    end = len(values)
    for r in sorted(lowers, reverse=True):
        head = values[:end]
        head.partition(r)
        upper = head[r + 1 :].min() if r + 1 < end else head[r]
        pairs[r] = (float(head[r]), float(upper))
        end = r + 1
    return pairs


def _pairs_by_kthvalue(values: torch.Tensor, lowers: set[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    n = values.numel()
    return {
        r: (torch.kthvalue(values, r + 1).values, torch.kthvalue(values, min(r + 2, n)).values) for r in lowers
    }


def magnitude_quantiles(values: torch.Tensor, qs: Sequence[float], *, overwrite: bool = False) -> list[torch.Tensor]:
    """Quantiles ``qs`` of a 1-D tensor as 0-dim tensors on its device (SPEC 1.4).

    Linear interpolation between neighbouring order statistics, like ``torch.quantile``;
    ``q <= 0`` gives 0 (nothing pruned). On the CPU ``values`` is copied and partitioned
    in place, or partitioned itself when ``overwrite`` is true.
    """
    values = values.detach()
    n = values.numel()
    positions = {q: _position(q, n) for q in qs if q > 0}
    lowers = {lower for lower, _ in positions.values()}
    if not lowers:
        pairs = {}
    elif on_numpy(values):
        array = values.numpy() if overwrite else values.numpy().copy()
        pairs = {
            r: (torch.tensor(a, dtype=values.dtype), torch.tensor(b, dtype=values.dtype))
            for r, (a, b) in _pairs_by_partition(array, lowers).items()
        }
    else:
        pairs = _pairs_by_kthvalue(values, lowers)
    zero = values.new_zeros(())
    result = []
    for q in qs:
        if q <= 0:
            result.append(zero)
            continue
        lower, weight = positions[q]
        below, above = pairs[lower]
        result.append(torch.lerp(below, above, weight))
    return result


def global_threshold(tensors: Sequence[torch.Tensor], sparsity: float) -> torch.Tensor:
    """The ``sparsity``-quantile of ``|w|`` over all ``tensors`` together (SPEC 1.4, Feather)."""
    magnitudes = torch.cat([t.detach().reshape(-1).abs() for t in tensors])
    return magnitude_quantiles(magnitudes, [sparsity], overwrite=True)[0]


def layer_thresholds(tensors: Sequence[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """The ``sparsity``-quantile of ``|w|`` of each tensor on its own (SPEC 1.4, layer-wise)."""
    return [magnitude_quantiles(t.detach().reshape(-1).abs(), [sparsity], overwrite=True)[0] for t in tensors]


class FlatMagnitudes:
    """``|w|`` of several tensors in one preallocated flat buffer with a view per tensor.

    The hot loop of sparse training (SPEC 1.4) reuses the buffers: no allocation per
    iteration, no per-layer host sync. On the CPU the selection partitions a scratch copy
    so that the magnitudes stay in tensor order for the masks.
    """

    def __init__(self, tensors: Sequence[torch.Tensor]) -> None:
        first = tensors[0]
        self.sizes = [t.numel() for t in tensors]
        self.flat = torch.empty(sum(self.sizes), dtype=first.dtype, device=first.device)
        self.views = list(self.flat.split(self.sizes))
        self._scratch = torch.empty_like(self.flat) if first.device.type == "cpu" else None
        self._scratch_views = [None] * len(self.sizes) if self._scratch is None else list(self._scratch.split(self.sizes))

    def gather(self, tensors: Sequence[torch.Tensor]) -> None:
        """Write ``|w|`` of each tensor into its view."""
        for t, view in zip(tensors, self.views):
            abs_into(t, view)

    def global_quantiles(self, qs: Sequence[float]) -> list[torch.Tensor]:
        """Quantiles over all gathered magnitudes."""
        return self._select(self.flat, self._scratch, qs)

    def layer_quantiles(self, index: int, qs: Sequence[float]) -> list[torch.Tensor]:
        """Quantiles over the magnitudes of tensor ``index``."""
        return self._select(self.views[index], self._scratch_views[index], qs)

    @staticmethod
    def _select(values: torch.Tensor, scratch: torch.Tensor | None, qs: Sequence[float]) -> list[torch.Tensor]:
        if scratch is None:
            return magnitude_quantiles(values, qs)
        copy_into(values, scratch)
        return magnitude_quantiles(scratch, qs, overwrite=True)
