"""Exact quantiles per segment by a radix select on the float bits: the accelerator path of formulas §1.4.

``torch.kthvalue`` is a slow path on CUDA and a sort does far more work than needed. Here
non-negative floats (magnitudes ``|w|``) are selected through their IEEE bit patterns,
which order exactly like the values: each pass counts the next 16 bits of the entries
that share the prefix found so far (one histogram for all segments, bins indexed by
``segment * 2^16 + digit``), and a cumulative sum per segment gives the next digit of the
wanted order statistic. Two passes give the exact ``x_(r)`` of float32 values (four for
float64); ``x_(r+1)`` is then ``x_(r)`` itself when enough entries tie with it, else
the smallest entry above it. Every shape is static and nothing is read back to the
host, so one call selects all layers without a host sync. It runs on any device; tests
pin it on the CPU to ``torch.quantile``.
"""

from __future__ import annotations

import torch

from tuneprune.sparsity.segments import Segments

DIGIT_BITS = 16
RADIX = 1 << DIGIT_BITS


def _keys(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer keys ordered like the non-negative ``values``, and the float values they encode."""
    if values.dtype == torch.float64:
        return values.view(torch.int64), values
    exact = values.float()  # float16/bfloat16 widen exactly
    return exact.view(torch.int32), exact


def _decode(prefix: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    bits = prefix.to(torch.int64 if like.dtype == torch.float64 else torch.int32)
    return bits.view(like.dtype)


def _select(keys: torch.Tensor, segments: Segments, ranks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Key of the order statistic ``ranks[l]`` (0-based) of each segment, and how many entries are <= it."""
    count, bits = segments.count, keys.element_size() * 8
    offsets = segments.ids.to(keys.dtype) * RADIX if segments.ids is not None else None  # None: one segment
    remaining = ranks.clone()  # rank among the entries that share the prefix found so far
    prefix = torch.zeros(count, dtype=torch.int64, device=keys.device)
    ones = torch.ones(1, dtype=torch.int32, device=keys.device).expand(keys.numel())
    for shift in range(bits - DIGIT_BITS, -1, -DIGIT_BITS):
        bins = (keys >> shift) & (RADIX - 1)
        if offsets is not None:
            bins = bins + offsets
        if shift + DIGIT_BITS < bits:  # later passes count only the entries under the prefix
            matching = (keys >> (shift + DIGIT_BITS)) == segments.spread(prefix).to(keys.dtype)
            bins = torch.where(matching, bins, count * RADIX)  # a spare bin for the others
        histogram = torch.zeros(count * RADIX + 1, dtype=torch.int32, device=keys.device)
        histogram.index_add_(0, bins.long(), ones)
        cumulative = histogram[:-1].view(count, RADIX).cumsum(1)
        digit = torch.searchsorted(cumulative, remaining.unsqueeze(1), right=True)
        before = torch.where(digit > 0, cumulative.gather(1, (digit - 1).clamp(min=0)), 0).squeeze(1)
        at = cumulative.gather(1, digit).squeeze(1) - before
        remaining = remaining - before
        prefix = (prefix << DIGIT_BITS) | digit.squeeze(1)
    return prefix, ranks - remaining + at


def _smallest_above(values: torch.Tensor, bound: torch.Tensor, segments: Segments) -> torch.Tensor:
    """Per segment, the smallest entry greater than ``bound[l]`` (inf when there is none)."""
    above = torch.where(values > segments.spread(bound), values, torch.inf)
    if segments.count == 1:
        return above.amin().unsqueeze(0)
    assert segments.ids is not None  # more than one segment
    initial = torch.full((segments.count,), torch.inf, dtype=values.dtype, device=values.device)
    return initial.scatter_reduce_(0, segments.ids, above, "amin")


def segmented_quantiles(values: torch.Tensor, segments: Segments, q: float | torch.Tensor) -> torch.Tensor:
    """The ``q[l]``-quantile of each segment of the flat non-negative ``values`` (formulas §1.4).

    Linear interpolation between the order statistics ``x_(r)`` and ``x_(r+1)`` at
    ``q * (n_l - 1)``, as ``torch.quantile`` does (positions in float64); ``q <= 0`` gives
    0 (nothing pruned). ``q`` is one value for every segment (a float, or a 0-dim tensor
    such as ``S_k`` on the accelerator path, formulas §10.6) or a tensor of one per segment,
    on ``values``' device. Returns one value per segment, in ``values``' dtype.
    """
    q = torch.as_tensor(q, dtype=torch.float64, device=values.device).expand(segments.count)
    position = q.clamp(min=0.0) * (segments.lengths - 1)
    lower = position.long().minimum(segments.lengths - 1)
    weight = position - lower
    keys, exact = _keys(values.detach())
    key, at_most = _select(keys, segments, lower)
    below = _decode(key, exact)
    upper = (lower + 1).minimum(segments.lengths - 1)
    above = torch.where(upper < at_most, below, _smallest_above(exact, below, segments))
    quantile = torch.lerp(below, above, weight.to(below.dtype))
    return torch.where(q > 0, quantile, 0.0).to(values.dtype)
