"""The masks of one training iteration: thresholds T and t, kept and eliminated weights (formulas §1.3, §1.4, §4).

On an accelerator every step works on the flat buffers of all prunable weights at once:
one ``abs`` pass, one selection (all layers batched), one compare, one segmented count,
and nothing is read back to the host: ``S_k`` is a 0-dim tensor on the device and the
branches on its value are ``torch.where`` (formulas §10.6). On the CPU ``S_k`` is a float
and the selection, compares and counts run through numpy (see
:mod:`~tuneprune.sparsity.kernels`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from tuneprune.sparsity.dispatch import device_scalar, on_numpy, select
from tuneprune.sparsity.drop import Elimination
from tuneprune.sparsity.flat import FlatLayout
from tuneprune.sparsity.kernels import compare_into
from tuneprune.sparsity.stability import jaccard_from_counts
from tuneprune.sparsity.thresholds import FlatMagnitudes


@dataclass(frozen=True)
class Masks:
    """Masks over the prunable layers at sparsity ``S_k``; ``slot`` names the buffer that holds them.

    ``sparsity`` is a float on the CPU path, a 0-dim float64 tensor on the weights' device
    on the accelerator path. ``thresholds`` holds T_l of every layer (the same T for all
    under the global mode), ``eliminations`` t_l (when weights may be eliminated: on the
    CPU path when the elimination applies at ``S_k``, on the accelerator path whenever
    ``rho > 0``, with ``t_l = 0`` and an empty mask where it does not apply); ``kept`` and
    ``eliminated`` are per-layer views, in the weights' shapes, of the flat masks.
    """

    sparsity: float | torch.Tensor
    slot: int
    thresholds: torch.Tensor
    kept_flat: torch.Tensor
    kept_counts: torch.Tensor
    kept: list[torch.Tensor]
    eliminations: torch.Tensor | None = None
    eliminated_flat: torch.Tensor | None = None
    eliminated_counts: torch.Tensor | None = None
    eliminated: list[torch.Tensor] | None = None


class MaskBuilder:
    """Computes :class:`Masks` from the flat weight buffer into preallocated flat buffers.

    ``threshold_mode`` is ``global`` (one T for the network, Feather) or ``layer`` (T_l per
    layer), formulas §1.4. Kept masks live in two slots so that the previous iteration's mask
    survives for the stability measure (formulas §3). Kept is ``|w| > T``, eliminated ``|w| < t``.
    formulas §4 defines the global ``t`` only under the global T, so ``layer`` thresholds with
    ``global`` elimination are refused.
    """

    def __init__(self, layout: FlatLayout, threshold_mode: str, elimination: Elimination) -> None:
        if threshold_mode == "layer" and elimination.rho > 0 and elimination.mode == "global":
            raise ValueError("layer thresholds need layer elimination (formulas §4 defines the global t under the global T)")
        self.threshold_mode = threshold_mode
        self.elimination = elimination
        self.layout = layout
        self.segments = layout.segments
        self.sizes = self.segments.sizes
        self.magnitudes = FlatMagnitudes(self.segments, layout.dtype)
        self.layer_sizes = self.segments.lengths
        self._kept = [layout.empty(torch.bool) for _ in range(2)]
        self._kept_views = [layout.shaped(kept) for kept in self._kept]
        self._overlap = layout.empty(torch.bool)
        self._eliminated = layout.empty(torch.bool) if elimination.rho > 0 else None
        self._eliminated_views = layout.shaped(self._eliminated) if self._eliminated is not None else None

    def _masks(self, sparsity: float | torch.Tensor, slot: int, thresholds: torch.Tensor) -> Masks:
        kept_flat = self._kept[slot]
        counts = self.segments.counts(kept_flat)
        return Masks(sparsity, slot, thresholds, kept_flat, counts, self._kept_views[slot])

    def build(self, weights: torch.Tensor, sparsity: float | torch.Tensor, slot: int) -> Masks:
        """Masks of the flat weight buffer ``weights`` at sparsity ``sparsity``, written into buffer ``slot`` (0 or 1).

        On the CPU path ``sparsity`` is read as a float and an elimination that does not
        apply is skipped. On the accelerator path it becomes a 0-dim float64 tensor on the
        weights' device and is never read: the elimination quantile is ``torch.where``'d to
        0 where it does not apply, which eliminates nothing (formulas §4, §10.6).
        """
        magnitudes, segments = self.magnitudes, self.segments
        on_host = on_numpy(magnitudes.flat)
        sparsity = float(sparsity) if on_host else device_scalar(sparsity, magnitudes.flat.device)
        magnitudes.gather(weights)
        applies = self.elimination.applies(sparsity)
        eliminating = isinstance(applies, torch.Tensor) or applies
        global_elimination = eliminating and self.elimination.mode == "global"
        if self.threshold_mode == "global":
            qs = [sparsity]
            if global_elimination:
                qs.append(select(applies, self.elimination.global_quantile(sparsity), 0.0))
            kept_threshold, *elimination = magnitudes.global_quantiles(qs)
            thresholds = kept_threshold.expand(segments.count)
        else:
            thresholds = kept_threshold = magnitudes.layer_quantiles(sparsity)
        compare_into("gt", magnitudes.flat, kept_threshold, segments, self._kept[slot])
        masks = self._masks(sparsity, slot, thresholds)
        if not eliminating:
            return masks
        assert self._eliminated is not None  # an elimination applies only with rho > 0
        if global_elimination:
            eliminations = elimination[0].expand(segments.count)
            compare_into("lt", magnitudes.flat, elimination[0], segments, self._eliminated)
        else:
            quantiles = self.elimination.layer_quantiles(masks.kept_counts, self.layer_sizes)
            eliminations = magnitudes.layer_quantiles(select(applies, quantiles, 0.0))
            compare_into("lt", magnitudes.flat, eliminations, segments, self._eliminated)
        return replace(
            masks,
            eliminations=eliminations,
            eliminated_flat=self._eliminated,
            eliminated_counts=segments.counts(self._eliminated),
            eliminated=self._eliminated_views,
        )

    def restore(self, kept_flat: torch.Tensor, sparsity: float | torch.Tensor, slot: int) -> Masks:
        """Masks holding a saved kept mask (for the stability of the next iteration)."""
        self._kept[slot].copy_(kept_flat)
        return self._masks(sparsity, slot, torch.zeros(self.segments.count, device=self.segments.device))

    def stability(self, current: Masks, previous: Masks) -> torch.Tensor:
        """Mean over layers of the Jaccard index of the kept sets, ``mu_k`` of formulas §3 (a 0-dim tensor)."""
        torch.logical_and(current.kept_flat, previous.kept_flat, out=self._overlap)
        overlap = self.segments.counts(self._overlap)
        return jaccard_from_counts(overlap, current.kept_counts, previous.kept_counts).mean()
