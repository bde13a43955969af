"""The masks of K pack members at one iteration: T, t, kept, eliminated, theta (formulas §1.3, §1.4, §2, §4).

Every member's prunable weights are one row of a ``[K, N]`` matrix (layers as ``L``
consecutive segments). Thresholds of all members come from one batched selection
(:mod:`tuneprune.packing.quantiles`); the rules of each member (threshold mode, theta
policy, elimination) are the solo engine's own objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch

from tuneprune.packing.quantiles import select
from tuneprune.sparsity.drop import Elimination
from tuneprune.sparsity.theta import ConstantTheta, LogDensityTheta, ThetaPolicy


@dataclass(frozen=True)
class MemberRule:
    """How one sparse member turns its sparsity S_k into masks."""

    threshold_mode: str
    theta_policy: ThetaPolicy
    elimination: Elimination

    @property
    def uniform_theta(self) -> bool:
        """Whether every layer gets the same theta (fixed policies, or log_density in mode global)."""
        policy = self.theta_policy
        return isinstance(policy, ConstantTheta) or (isinstance(policy, LogDensityTheta) and policy.mode == "global")


@dataclass(frozen=True)
class PackedMasks:
    """Masks of all members at their sparsities; per-element tensors are ``[K, N]`` or broadcast ``[K, 1]``.

    ``active`` marks the rows computing with ``P_T(w)``: sparse members with ``S_k > 0``
    (the others use ``w`` itself, formulas §1.2).
    """

    sparsities: list[float]
    active: torch.Tensor
    thresholds: torch.Tensor
    kept: torch.Tensor
    kept_counts: torch.Tensor
    thetas: torch.Tensor
    theta_per_weight: torch.Tensor
    eliminated: torch.Tensor | None = None
    eliminated_counts: torch.Tensor | None = None

    def rows(self, index: Sequence[int]) -> "PackedMasks":
        """The masks of the members at ``index`` only."""
        selected = torch.tensor(list(index), dtype=torch.long, device=self.kept.device)
        changes = {
            f.name: getattr(self, f.name).index_select(0, selected)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, sparsities=[self.sparsities[i] for i in index], **changes)


class PackedMaskBuilder:
    """Builds :class:`PackedMasks` from the ``[K, N]`` weights; ``rules[k]`` is None for a dense member."""

    def __init__(self, sizes: Sequence[int], rules: Sequence[MemberRule | None], device: torch.device) -> None:
        self.sizes = list(sizes)
        self.layer_sizes = torch.tensor(self.sizes, dtype=torch.long, device=device)
        self.segment_ids = torch.repeat_interleave(torch.arange(len(self.sizes), device=device), self.layer_sizes)
        self.rules = list(rules)

    def keep(self, rows: Sequence[int]) -> None:
        self.rules = [self.rules[i] for i in rows]

    def _per_weight(self, per_layer: torch.Tensor, uniform: bool) -> torch.Tensor:
        """``[K, L]`` values as ``[K, 1]`` when every row is constant over layers, else ``[K, N]``."""
        return per_layer[:, :1] if uniform else per_layer.repeat_interleave(self.layer_sizes, dim=1)

    def layer_counts(self, flags: torch.Tensor) -> torch.Tensor:
        """``[K, L]`` number of True entries of each member in each layer."""
        return torch.stack([segment.sum(1) for segment in flags.split(self.sizes, dim=1)], dim=1)

    def _thetas(self, densities: torch.Tensor) -> torch.Tensor:
        """``[K, L]`` theta of each member's layers by its own policy (formulas §2); 1 for dense members."""
        rows = []
        for rule, row in zip(self.rules, densities):
            if rule is None:
                rows.append(torch.ones_like(row))
            else:
                thetas = rule.theta_policy.layer_thetas(row)
                rows.append(torch.as_tensor(thetas, dtype=row.dtype, device=row.device).expand_as(row))
        return torch.stack(rows)

    def build(self, weights: torch.Tensor, sparsities: Sequence[float]) -> PackedMasks:
        """Masks of every member at its own sparsity ``sparsities[k]`` (formulas §1.4)."""
        magnitudes = weights.detach().abs()
        n_layers = len(self.sizes)
        selection = select(magnitudes, self.sizes, self.segment_ids)
        layer_rows = [rule is not None and rule.threshold_mode == "layer" for rule in self.rules]
        global_qs = [0.0 if layer else s for s, layer in zip(sparsities, layer_rows)]
        thresholds = selection.global_quantiles(global_qs).expand(-1, n_layers)
        if any(layer_rows):
            layer_qs = [[s if layer else 0.0] * n_layers for s, layer in zip(sparsities, layer_rows)]
            rows = torch.tensor(layer_rows, device=weights.device)[:, None]
            thresholds = torch.where(rows, selection.layer_quantiles(layer_qs), thresholds)
        thresholds = self._per_weight(thresholds, not any(layer_rows))
        kept = magnitudes > thresholds
        kept_counts = self.layer_counts(kept)
        thetas = self._thetas(kept_counts / self.layer_sizes)
        uniform_theta = all(rule is None or rule.uniform_theta for rule in self.rules)
        active = [rule is not None and s > 0 for rule, s in zip(self.rules, sparsities)]
        masks = PackedMasks(
            list(sparsities),
            torch.tensor(active, device=weights.device)[:, None],
            thresholds,
            kept,
            kept_counts,
            thetas,
            self._per_weight(thetas, uniform_theta),
        )
        eliminated = self._eliminated(magnitudes, selection, masks)
        if eliminated is None:
            return masks
        return replace(masks, eliminated=eliminated, eliminated_counts=self.layer_counts(eliminated))

    def _eliminated(self, magnitudes: torch.Tensor, selection, masks: PackedMasks) -> torch.Tensor | None:
        """``|w| < t`` for the members whose elimination applies at their S_k (formulas §4), else None."""
        applies = [rule is not None and rule.elimination.applies(s) for rule, s in zip(self.rules, masks.sparsities)]
        if not any(applies):
            return None
        n_layers = len(self.sizes)
        layer_sparsities = (1.0 - masks.kept_counts / self.layer_sizes).tolist()
        global_qs, layer_qs, layer_rows = [], [], []
        for rule, s, applied, row in zip(self.rules, masks.sparsities, applies, layer_sparsities):
            by_network = applied and rule.elimination.mode == "global"
            global_qs.append(rule.elimination.global_quantile(s) if by_network else 0.0)
            by_segment = applied and not by_network
            layer_qs.append(rule.elimination.layer_quantiles(torch.tensor(row)).tolist() if by_segment else [0.0] * n_layers)
            layer_rows.append(by_segment)
        cutoffs = selection.global_quantiles(global_qs).expand(-1, n_layers)
        if any(layer_rows):
            per_layer = selection.layer_quantiles(layer_qs)
            rows = torch.tensor(layer_rows, device=magnitudes.device)[:, None]
            cutoffs = torch.where(rows, per_layer, cutoffs)
        return magnitudes < self._per_weight(cutoffs, not any(layer_rows))
