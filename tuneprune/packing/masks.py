"""The masks of K pack members at one iteration: T, t, kept, eliminated, theta (formulas §1.3, §1.4, §2, §4).

Every member's prunable weights are one row of a ``[K, N]`` matrix (layers as ``L``
consecutive segments). Its flat ``[K * N]`` view is cut into segments
(:class:`~tuneprune.packing.segments.RowSegments`: a member's row, or its layers), so the
solo engine's selection (radix select on accelerators, partition on the CPU), compares
and counts serve all members at once; the rules of each member (threshold mode, theta
policy, elimination) are the solo engine's own objects. As in the solo engine, on the
CPU path the sparsities are floats and an elimination that does not apply is skipped;
on the accelerator path they are 0-dim tensors on the device, never read, and what
depends on them is selected by ``torch.where`` (formulas §10.6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch

from tuneprune.packing.segments import RowSegments
from tuneprune.sparsity.dispatch import Number, device_vector, on_numpy, select
from tuneprune.sparsity.drop import Elimination
from tuneprune.sparsity.kernels import compare_into
from tuneprune.sparsity.theta import ConstantTheta, LogDensityTheta, ThetaPolicy
from tuneprune.sparsity.thresholds import FlatMagnitudes


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

    ``sparsities`` holds each member's ``S_k`` (0 for a dense one): floats on the CPU
    path, 0-dim float64 tensors on the device on the accelerator path. ``active`` marks
    the rows computing with ``P_T(w)``: sparse members with ``S_k > 0`` (the others use
    ``w`` itself, formulas §1.2).
    """

    sparsities: list[Number]
    active: torch.Tensor
    thresholds: torch.Tensor
    kept: torch.Tensor
    kept_counts: torch.Tensor
    thetas: torch.Tensor
    theta_per_weight: torch.Tensor
    eliminated: torch.Tensor | None = None
    eliminated_counts: torch.Tensor | None = None

    def rows(self, index: Sequence[int]) -> PackedMasks:
        """The masks of the members at ``index`` only."""
        selected = torch.tensor(list(index), dtype=torch.long, device=self.kept.device)
        changes = {
            f.name: getattr(self, f.name).index_select(0, selected)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, sparsities=[self.sparsities[i] for i in index], **changes)


class PackedMaskBuilder:
    """Builds :class:`PackedMasks` from the ``[K, N]`` weights; ``rules[k]`` is None for a dense member.

    Three cuts of the flat view: by member and layer (counts, theta), by threshold mode
    (T, formulas §1.4) and by elimination mode (t, formulas §4); a dense member's row is
    one segment with quantile 0. The cuts and buffers are made for weights of ``dtype``
    when the rules are set (here and in :meth:`keep`, between epochs), not inside a
    training step, where copying their index tensors to an accelerator would wait for it.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        rules: Sequence[MemberRule | None],
        device: torch.device,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.sizes = list(sizes)
        self.device, self.dtype = device, dtype
        self.layer_sizes = torch.tensor(self.sizes, dtype=torch.long, device=device)
        self._arrange(list(rules))

    def _arrange(self, rules: list[MemberRule | None]) -> None:
        """The three cuts (equal ones shared) and the magnitudes' buffers for ``rules`` (none without prunable weights)."""
        self.rules = rules
        if not self.sizes or not rules:
            return
        cuts: dict[tuple[bool, ...], RowSegments] = {}

        def cut(split: list[bool]) -> RowSegments:
            if tuple(split) not in cuts:
                cuts[tuple(split)] = RowSegments(self.sizes, split, self.device)
            return cuts[tuple(split)]

        rules = self.rules
        self.layers = cut([True] * len(rules))
        self.thresholds = cut([rule is not None and rule.threshold_mode == "layer" for rule in rules])
        self.eliminations = cut([rule is not None and rule.elimination.mode == "layer" for rule in rules])
        self.magnitudes = FlatMagnitudes(self.thresholds.segments, self.dtype)

    def keep(self, rows: Sequence[int]) -> None:
        self._arrange([self.rules[i] for i in rows])

    def layer_counts(self, flags: torch.Tensor) -> torch.Tensor:
        """``[K, L]`` number of True entries of each member in each layer."""
        return self.layers.segments.counts(flags.reshape(-1)).view(len(self.rules), len(self.sizes))

    def _thetas(self, densities: torch.Tensor) -> torch.Tensor:
        """``[K, L]`` theta of each member's layers by its own policy (formulas §2); 1 for dense members."""
        rows = []
        for rule, row in zip(self.rules, densities, strict=True):
            if rule is None:
                rows.append(torch.ones_like(row))
            else:
                thetas = rule.theta_policy.layer_thetas(row)  # a float is a fill, not a copy to the device
                rows.append(thetas.to(row.dtype) if isinstance(thetas, torch.Tensor) else torch.full_like(row, thetas))
        return torch.stack(rows)

    def _compare(self, op: str, per_segment: torch.Tensor, cut: RowSegments) -> torch.Tensor:
        """``[K, N]`` ``|w| op threshold`` of each weight's segment (``gt`` or ``lt``)."""
        flags = torch.empty(self.magnitudes.flat.shape, dtype=torch.bool, device=self.device)
        compare_into(op, self.magnitudes.flat, per_segment, cut.segments, flags)
        return flags.view(cut.shape)

    def _member_sparsities(self, sparsities: Sequence[Number] | torch.Tensor) -> tuple[list[Number], torch.Tensor]:
        """Each member's ``S_k`` (0 for a dense one) and all of them as a ``[K]`` float64 tensor on the device.

        Floats on the CPU path (values in CPU memory: reading them is no device sync); on
        the accelerator path 0-dim tensors on the device, made without reading a value
        back or copying a host list over (formulas §10.6).
        """
        values = [0.0 if rule is None else s for rule, s in zip(self.rules, sparsities, strict=True)]  # a tensor's are 0-dim
        if on_numpy(self.magnitudes.flat):
            values = [float(s) for s in values]
            return values, torch.tensor(values, dtype=torch.float64, device=self.device)
        table = device_vector(values, self.device)
        return list(table.unbind()), table

    def build(self, weights: torch.Tensor, sparsities: Sequence[Number] | torch.Tensor) -> PackedMasks:
        """Masks of every member at its own sparsity ``sparsities[k]`` (formulas §1.4), one selection for all.

        ``sparsities`` is a float or a 0-dim tensor per member, or a ``[K]`` tensor. On the
        accelerator path nothing is read back: the elimination runs whenever a member has
        ``rho > 0``, its quantile 0 (nothing eliminated) for members where it does not apply.
        """
        if weights.dtype != self.dtype:
            raise ValueError(f"weights of dtype {weights.dtype}, the builder's buffers are {self.dtype}")
        self.magnitudes.gather(weights.reshape(-1))
        sparsities, qs = self._member_sparsities(sparsities)
        thresholds = self.magnitudes.layer_quantiles(self.thresholds.from_table(qs[:, None]))
        kept = self._compare("gt", thresholds, self.thresholds)
        kept_counts = self.layer_counts(kept)
        thetas = self._thetas(kept_counts / self.layer_sizes)
        uniform_theta = all(rule is None or rule.uniform_theta for rule in self.rules)
        masks = PackedMasks(
            sparsities,
            (qs > 0)[:, None],
            self.thresholds.per_weight(thresholds),
            kept,
            kept_counts,
            thetas,
            thetas[:, :1] if uniform_theta else self.layers.per_weight(thetas.reshape(-1)),
        )
        applies = [False if rule is None else rule.elimination.applies(s) for rule, s in zip(self.rules, sparsities, strict=True)]
        if not any(isinstance(a, torch.Tensor) or a for a in applies):
            return masks
        eliminated = self._eliminated(masks, applies)
        return replace(masks, eliminated=eliminated, eliminated_counts=self.layer_counts(eliminated))

    def _eliminated(self, masks: PackedMasks, applies: Sequence[bool | torch.Tensor]) -> torch.Tensor:
        """``|w| < t`` with each member's t, or t_l of the sparsities its layers reached (formulas §4); one selection.

        ``applies[k]``: whether member k's elimination applies at its ``S_k`` (a 0-dim bool tensor on the accelerator path).
        """
        table = torch.stack(
            [
                _elimination_quantiles(rule.elimination if rule else None, a, s, counts, self.layer_sizes)
                for rule, a, s, counts in zip(self.rules, applies, masks.sparsities, masks.kept_counts, strict=True)
            ]
        )
        cutoffs = self.magnitudes.layer_quantiles(self.eliminations.from_table(table), self.eliminations.segments)
        return self._compare("lt", cutoffs, self.eliminations)


def _elimination_quantiles(
    elimination: Elimination | None,
    applies: bool | torch.Tensor,
    sparsity: Number,
    kept_counts: torch.Tensor,
    layer_sizes: torch.Tensor,
) -> torch.Tensor:
    """The quantile of t per layer (float64): ``rho S_k`` (global), ``rho S_{l,k}`` (layer), 0 where none applies.

    ``applies`` a 0-dim bool tensor (the accelerator path) selects by ``torch.where``, unread.
    """
    if elimination is None or applies is False:
        return kept_counts.new_zeros(kept_counts.shape, dtype=torch.float64)
    if elimination.mode == "layer":
        quantiles = select(applies, elimination.layer_quantiles(kept_counts, layer_sizes), 0.0)
        assert isinstance(quantiles, torch.Tensor)  # applies is True or a tensor here
        return quantiles
    quantile = elimination.global_quantile(sparsity)
    if isinstance(quantile, torch.Tensor):
        chosen = select(applies, quantile, 0.0)
        assert isinstance(chosen, torch.Tensor)  # applies is True or a tensor here
        return chosen.expand(kept_counts.shape)
    return kept_counts.new_full(kept_counts.shape, quantile, dtype=torch.float64)
