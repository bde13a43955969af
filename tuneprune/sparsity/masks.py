"""The masks of one training iteration: thresholds T and t, kept and eliminated weights (SPEC 1.3, 1.4, 4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from tuneprune.sparsity.drop import Elimination
from tuneprune.sparsity.kernels import and_into, copy_into, greater_into, less_into, segment_counts
from tuneprune.sparsity.stability import jaccard_from_counts
from tuneprune.sparsity.thresholds import FlatMagnitudes


@dataclass(frozen=True)
class Masks:
    """Masks over the prunable layers at sparsity ``S_k``; ``slot`` names the buffer that holds them."""

    sparsity: float
    slot: int
    thresholds: list[torch.Tensor]
    kept_flat: torch.Tensor
    kept_counts: torch.Tensor
    kept: list[torch.Tensor]
    eliminated: list[torch.Tensor] | None = None
    eliminated_counts: torch.Tensor | None = None


class MaskBuilder:
    """Computes :class:`Masks` from the current weights into preallocated flat buffers.

    ``threshold_mode`` is ``global`` (one T for the network, Feather) or ``layer`` (T_l per
    layer), SPEC 1.4. Kept masks live in two slots so that the previous iteration's mask
    survives for the stability measure (SPEC 3). Kept is ``|w| > T``, eliminated ``|w| < t``.
    """

    def __init__(
        self, weights: Sequence[torch.Tensor], threshold_mode: str, elimination: Elimination
    ) -> None:
        self.threshold_mode = threshold_mode
        self.elimination = elimination
        self.magnitudes = FlatMagnitudes(weights)
        self.shapes = [w.shape for w in weights]
        self.sizes = self.magnitudes.sizes
        total, device = sum(self.sizes), weights[0].device
        self.layer_sizes = torch.tensor(self.sizes, device=device)
        self._kept = [torch.empty(total, dtype=torch.bool, device=device) for _ in range(2)]
        self._overlap = torch.empty(total, dtype=torch.bool, device=device)
        self._eliminated = torch.empty(total, dtype=torch.bool, device=device) if elimination.rho > 0 else None

    def _shaped(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [view.view(shape) for view, shape in zip(flat.split(self.sizes), self.shapes)]

    def _masks(self, sparsity: float, slot: int, thresholds: list[torch.Tensor]) -> Masks:
        kept_flat = self._kept[slot]
        return Masks(sparsity, slot, thresholds, kept_flat, segment_counts(kept_flat, self.sizes), self._shaped(kept_flat))

    def build(self, weights: Sequence[torch.Tensor], sparsity: float, slot: int) -> Masks:
        """Masks of ``weights`` at sparsity ``sparsity``, written into buffer ``slot`` (0 or 1)."""
        mags = self.magnitudes
        mags.gather(weights)
        kept_flat = self._kept[slot]
        eliminating = self.elimination.applies(sparsity)
        global_elimination = []
        if eliminating and self.elimination.mode == "global":
            global_elimination = [self.elimination.global_quantile(sparsity)]
        if self.threshold_mode == "global":
            threshold, *elimination_threshold = mags.global_quantiles([sparsity, *global_elimination])
            thresholds = [threshold] * len(self.sizes)
            greater_into(mags.flat, threshold, kept_flat)
        else:
            thresholds = [mags.layer_quantiles(i, [sparsity])[0] for i in range(len(self.sizes))]
            for view, threshold, out in zip(mags.views, thresholds, kept_flat.split(self.sizes)):
                greater_into(view, threshold, out)
            elimination_threshold = mags.global_quantiles(global_elimination) if global_elimination else []
        masks = self._masks(sparsity, slot, thresholds)
        if not eliminating:
            return masks
        if elimination_threshold:
            less_into(mags.flat, elimination_threshold[0], self._eliminated)
        else:
            layer_sparsities = (1.0 - masks.kept_counts / self.layer_sizes).tolist()  # one host sync, all layers
            outputs = self._eliminated.split(self.sizes)
            for i, q in enumerate(self.elimination.layer_quantiles(layer_sparsities)):
                less_into(mags.views[i], mags.layer_quantiles(i, [q])[0], outputs[i])
        eliminated_counts = segment_counts(self._eliminated, self.sizes)
        return replace(masks, eliminated=self._shaped(self._eliminated), eliminated_counts=eliminated_counts)

    def restore(self, kept_flat: torch.Tensor, sparsity: float, slot: int) -> Masks:
        """Masks holding a saved kept mask (for the stability of the next iteration)."""
        copy_into(kept_flat, self._kept[slot])
        return self._masks(sparsity, slot, [])

    def stability(self, current: Masks, previous: Masks) -> torch.Tensor:
        """Mean over layers of the Jaccard index of the kept sets, ``mu_k`` of SPEC 3 (a 0-dim tensor)."""
        and_into(current.kept_flat, previous.kept_flat, self._overlap)
        overlap = segment_counts(self._overlap, self.sizes)
        return jaccard_from_counts(overlap, current.kept_counts, previous.kept_counts).mean()
