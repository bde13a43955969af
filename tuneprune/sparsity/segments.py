"""Consecutive segments of a flat buffer, one per prunable layer, and reductions and comparisons over them."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate, pairwise

import numpy as np
import torch

from tuneprune.sparsity.dispatch import on_numpy

_NUMPY_COMPARISONS = {"gt": np.greater, "lt": np.less}
_TORCH_COMPARISONS = {"gt": torch.gt, "lt": torch.lt}


class Segments:
    """The layers of a flat buffer: ``sizes[l]`` consecutive entries each, in layer order.

    ``ids`` (one segment index per entry; ``None`` for a single segment) and ``lengths`` are precomputed on the
    buffer's device, so that a per-layer reduction or constant takes one operation, without a host sync.
    """

    def __init__(self, sizes: Sequence[int], device: torch.device | str) -> None:
        if not sizes or min(sizes) < 1:
            raise ValueError(f"every segment needs at least one entry, got sizes {list(sizes)}")
        self.sizes = [int(s) for s in sizes]
        self.count = len(self.sizes)
        self.total = sum(self.sizes)
        self.device = torch.device(device)
        self.lengths = torch.tensor(self.sizes, device=self.device)
        self.ends = self.lengths.cumsum(0) - 1  # each segment's last entry
        self.starts = self.ends + 1 - self.lengths
        arange = torch.arange(self.count, device=self.device)
        self.ids = torch.repeat_interleave(arange, self.lengths) if self.count > 1 else None
        self.slices = [
            slice(start, end) for start, end in pairwise(accumulate(self.sizes, initial=0))
        ]  # for numpy views

    def counts(self, mask: torch.Tensor) -> torch.Tensor:
        """Number of True entries of a flat boolean ``mask`` in each segment (int64, on its device).

        On an accelerator one running sum read at the segments' ends. On the CPU
        ``numpy.count_nonzero`` of each segment's view, which is about 70 times faster there
        than any single segmented reduction (``reduceat``, ``bincount``, ``index_add_``) at
        ResNet-18's 11.2M weights.
        """
        if on_numpy(mask):
            array = mask.numpy()
            return torch.tensor([np.count_nonzero(array[piece]) for piece in self.slices])
        return self.reduced_counts(mask)

    def reduced_counts(self, mask: torch.Tensor) -> torch.Tensor:
        """:meth:`counts` as differences of ``mask.cumsum`` at the segments' ends (the accelerator path; runs on
        any device). A scan, where an ``index_add_`` of the segment ids would collide its atomic adds on a few
        counters."""
        if self.ids is None:
            return mask.sum().unsqueeze(0)
        at_ends = mask.cumsum(0)[self.ends]
        return torch.diff(at_ends, prepend=at_ends.new_zeros(1))

    def spread(self, per_segment: torch.Tensor) -> torch.Tensor:
        """A flat tensor holding ``per_segment[l]`` at every entry of segment ``l`` (one gather)."""
        return per_segment.expand(self.total) if self.ids is None else per_segment.index_select(0, self.ids)


class RowSegments:
    """The ``[K, N]`` matrix of K members' prunable weights as segments of its flat ``[K * N]`` view (formulas §1.4).

    ``split[k]`` says whether row k is cut by layer (its ``L`` layers, one quantile each)
    or is one segment (a network-wide quantile), in row order, so that one selection,
    compare and count serves every member and layer without a copy per member. Values
    per (member, layer) come in as ``[K, L]`` tables (a whole row takes its first column)
    or ``[K]`` (one per member), values per segment go out per weight.
    """

    def __init__(self, layer_sizes: Sequence[int], split: Sequence[bool], device: torch.device) -> None:
        n_layers, width = len(layer_sizes), sum(layer_sizes)
        sizes, columns = [], []
        for k, by_layer in enumerate(split):
            sizes += list(layer_sizes) if by_layer else [width]
            columns += [k * n_layers + layer for layer in range(n_layers if by_layer else 1)]
        self.segments = Segments(sizes, device)
        self.shape = (len(split), width)
        self.table_shape = (len(split), n_layers)
        self.whole_rows = not any(split)
        self.all_split = all(split)
        self._columns = torch.tensor(columns, device=device)

    def from_table(self, table: torch.Tensor) -> torch.Tensor:
        """The entry of ``table`` that belongs to each segment: ``[K]`` one per member, ``[K, L]`` one per layer.

        A 0-dim table (one member) is returned as it is: the selection broadcasts it.
        """
        if table.dim() == 0:  # one member, one value
            return table
        if table.dim() == 1:
            if self.whole_rows:
                return table
            if self.shape[0] == 1:
                return table.expand(self.segments.count)
            table = table[:, None]
        elif self.whole_rows:
            return table[:, 0]
        table = table.expand(self.table_shape)
        return table.reshape(-1) if self.all_split else table.reshape(-1).index_select(0, self._columns)

    def per_weight(self, per_segment: torch.Tensor) -> torch.Tensor:
        """``per_segment`` values as ``[K, 1]`` when every row is one segment, else ``[K, N]``."""
        if self.whole_rows:
            return per_segment.view(-1, 1)
        return self.segments.spread(per_segment).view(self.shape)


def compare_into(
    op: str, values: torch.Tensor, thresholds: torch.Tensor, segments: Segments, out: torch.Tensor
) -> None:
    """``out = values op T``, ``op`` ``gt`` or ``lt``; ``thresholds`` one 0-dim T or one T_l per segment.

    On the CPU numpy ufuncs on the tensors' own memory (single-threaded SIMD loops, about
    ten times faster than ``torch.gt`` with a 0-dim threshold on a busy machine; reading a
    CPU threshold is no device sync); on an accelerator one torch operation over the flat
    buffer, the per-segment thresholds spread by the segment ids.
    """
    if on_numpy(values, out):
        ufunc, array, result = _NUMPY_COMPARISONS[op], values.numpy(), out.numpy()
        if thresholds.dim() == 0:
            ufunc(array, thresholds.item(), out=result)
            return
        for piece, threshold in zip(segments.slices, thresholds.tolist(), strict=True):
            ufunc(array[piece], threshold, out=result[piece])
        return
    _TORCH_COMPARISONS[op](values, thresholds if thresholds.dim() == 0 else segments.spread(thresholds), out=out)
