"""The masks of K members at one iteration: T, t, kept, eliminated, theta and m (formulas §1.3, §1.4, §2, §4).

The one implementation of these rules, for one model (:class:`~tuneprune.sparsity.Sparsifier`,
K = 1) and for a pack of K trials (:mod:`tuneprune.training`). Every member's prunable
weights are one row of a ``[K, N]`` matrix (its ``L`` layers consecutive segments); the
flat ``[K * N]`` view is cut into segments (:class:`~tuneprune.sparsity.segments.RowSegments`),
so that one ``abs`` pass, one selection, one compare and one segmented count serve every
member and layer. On the CPU path the sparsities are floats and an elimination that does
not apply is skipped; on the accelerator path they are 0-dim tensors on the device, never
read, and what depends on them is selected by ``torch.where`` (formulas §10.6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from tuneprune.sparsity.dispatch import Number, device_scalar, device_vector, on_numpy
from tuneprune.sparsity.drop import Elimination
from tuneprune.sparsity.rows import take_members
from tuneprune.sparsity.segments import RowSegments, compare_into
from tuneprune.sparsity.theta import ConstantTheta, LogDensityTheta, ThetaPolicy
from tuneprune.sparsity.thresholds import FlatMagnitudes

Theta = float | torch.Tensor  # one theta for every layer of a member, or one per layer


def jaccard_from_counts(intersection: torch.Tensor, count_a: torch.Tensor, count_b: torch.Tensor) -> torch.Tensor:
    """``|A and B| / |A or B|`` (Jaccard: intersection over union) from the counts (elementwise over layers); 1 when both sets are empty."""
    union = count_a + count_b - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1), 1.0)


def jaccard(mask_a: torch.Tensor, mask_b: torch.Tensor) -> float:
    """Jaccard index of the kept (True) entries of two masks; 1.0 for two empty masks, mask stability (formulas §3)."""
    a, b = mask_a.bool(), mask_b.bool()
    return float(jaccard_from_counts((a & b).sum(), a.sum(), b.sum()))


@dataclass(frozen=True)
class MemberRule:
    """How one sparse member turns its sparsity S_k into masks: threshold mode (§1.4), theta policy (§2), elimination (§4).

    formulas §4 defines the global ``t`` only under the global T, so ``layer`` thresholds
    with a ``global`` elimination are refused.
    """

    threshold_mode: str
    theta_policy: ThetaPolicy
    elimination: Elimination

    def __post_init__(self) -> None:
        if self.threshold_mode == "layer" and self.elimination.rho > 0 and self.elimination.mode == "global":
            raise ValueError(
                "layer thresholds need layer elimination (formulas §4 defines the global t under the global T)"
            )

    @property
    def uniform_theta(self) -> bool:
        """Whether every layer gets the same theta (fixed policies, or log_density in mode global)."""
        policy = self.theta_policy
        return isinstance(policy, ConstantTheta) or (isinstance(policy, LogDensityTheta) and policy.mode == "global")


@dataclass(frozen=True)
class Masks:
    """Masks of all members at their sparsities; per-weight tensors are ``[K, N]``.

    ``sparsities`` holds each member's ``S_k`` (0 for a dense one; floats or 0-dim float64
    tensors, as the module docstring says). ``active`` marks the rows computing with
    ``P_T(w)``: sparse members with ``S_k > 0`` (the others use ``w`` itself, formulas
    §1.2), as ``[K, 1]`` (0-dim for one member on the accelerator path); ``host_active``
    the same as bools where the host knows them (the CPU path), else None. ``thresholds``
    holds T per segment of the builder's threshold cut (one per member, or one per layer of
    a member with layer thresholds); counts are per member and layer, ``[K * L]``
    member-major; ``thetas`` each member's theta (a float, or a tensor of one per layer).
    ``slot`` names the builder's buffer holding ``kept`` (0 or 1).
    """

    sparsities: list[Number]
    active: torch.Tensor
    host_active: list[bool] | None
    thresholds: torch.Tensor
    kept: torch.Tensor
    kept_counts: torch.Tensor
    thetas: list[Theta]
    slot: int
    eliminated: torch.Tensor | None = None
    eliminated_counts: torch.Tensor | None = None

    def table(self, counts: torch.Tensor) -> torch.Tensor:
        """``[K, L]`` view of per-member-and-layer ``counts``."""
        return counts.view(len(self.sparsities), -1)

    def layer_thetas(self) -> torch.Tensor:
        """``[K, L]`` theta of every member's layers, on the CPU (for the metrics)."""
        layers = self.table(self.kept_counts).shape[1]
        return torch.stack([torch.as_tensor(theta, dtype=torch.float32).cpu().expand(layers) for theta in self.thetas])


class MaskBuilder:
    """Builds :class:`Masks` of the ``[K, N]`` weights; ``rules[k]`` is None for a dense member.

    Three cuts of the flat view: by member and layer (counts, theta), by threshold mode
    (T, formulas §1.4) and by elimination mode (t, formulas §4); a dense member's row is
    one segment with quantile 0. Kept masks live in two slots so that the previous
    iteration's mask survives for the stability measure (formulas §3). The cuts and
    buffers are made for weights of ``dtype`` when the rules are set (here and in
    :meth:`keep`, between epochs), not inside a training step, where copying their index
    tensors to an accelerator would wait for it. Values per member are ``[K]`` tensors,
    0-dim for one member (no operator spent on a dimension of size 1).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        rules: Sequence[MemberRule | None],
        device: torch.device,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.sizes = list(sizes)
        self.device, self.dtype = torch.device(device), dtype
        self.layer_sizes = torch.tensor(self.sizes, dtype=torch.long, device=self.device)
        self._arrange(list(rules))

    def _arrange(self, rules: list[MemberRule | None]) -> None:
        """The three cuts (equal ones shared) and the buffers for ``rules`` (none without prunable weights)."""
        self.rules = rules
        self._host_active_rows: dict[tuple[bool, ...], torch.Tensor] = {}
        self._theta_columns: dict[tuple[float, ...], torch.Tensor] = {}
        if not self.sizes or not rules:
            return
        splits = (
            (True,) * len(rules),
            tuple(rule is not None and rule.threshold_mode == "layer" for rule in rules),
            tuple(rule is not None and rule.elimination.mode == "layer" for rule in rules),
        )
        cuts = {split: RowSegments(self.sizes, split, self.device) for split in dict.fromkeys(splits)}
        self.layers, self.thresholds, self.eliminations = (cuts[split] for split in splits)
        self.magnitudes = FlatMagnitudes(self.thresholds.segments, self.dtype)
        shape = self.layers.shape

        def flat_and_rows(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
            flat = torch.empty(shape[0] * shape[1], dtype=dtype, device=self.device)
            return flat, flat.view(shape)

        self._kept = [flat_and_rows(torch.bool) for _ in range(2)]
        self._overlap = flat_and_rows(torch.bool)
        eliminating = any(rule is not None and rule.elimination.rho > 0 for rule in rules)
        self._eliminated = flat_and_rows(torch.bool) if eliminating else None
        self._scales = [flat_and_rows(self.dtype) for _ in range(2)]

    def keep(self, rows: Sequence[int]) -> None:
        """Go on with the members at ``rows`` only (new buffers: masks to keep are copied in by :meth:`restore`)."""
        self._arrange(take_members(self.rules, rows))

    def _member_rows(self, counts: torch.Tensor) -> list[torch.Tensor]:
        """Each member's ``[L]`` piece of per-member-and-layer ``counts``."""
        return [counts] if len(self.rules) == 1 else list(counts.view(len(self.rules), -1).unbind())

    def _member_sparsities(
        self, sparsities: Sequence[Number] | torch.Tensor
    ) -> tuple[list[Number], torch.Tensor, torch.Tensor, list[bool] | None]:
        """Each member's ``S_k`` (0 for a dense one), all of them as one float64 tensor on the device, and which are active.

        On the accelerator path made without reading a value back or copying a host list over (formulas §10.6).
        """
        values = [0.0 if rule is None else s for rule, s in zip(self.rules, sparsities, strict=True)]
        if on_numpy(self.magnitudes.flat):
            floats = [float(s) for s in values]
            host_active = [s > 0 for s in floats]
            pattern = tuple(host_active)
            if pattern not in self._host_active_rows:  # a handful of patterns per run: made once each
                self._host_active_rows[pattern] = torch.tensor(host_active)[:, None]
            table = torch.tensor(floats, dtype=torch.float64)
            return list(floats), table, self._host_active_rows[pattern], host_active
        if len(values) == 1:
            value = device_scalar(values[0], self.device)
            return [value], value, value > 0, None
        table = device_vector(values, self.device)
        return list(table.unbind()), table, (table > 0)[:, None], None

    def _thetas(self, kept_counts: torch.Tensor) -> list[Theta]:
        """Each member's theta by its own policy from its layers' densities (formulas §2; a constant needs none), 1
        for a dense member."""
        policies = [ConstantTheta(1.0) if rule is None else rule.theta_policy for rule in self.rules]
        return [
            policy.value if isinstance(policy, ConstantTheta) else policy.layer_thetas(counts / self.layer_sizes)
            for policy, counts in zip(policies, self._member_rows(kept_counts), strict=True)
        ]

    def build(self, weights: torch.Tensor, sparsities: Sequence[Number] | torch.Tensor, slot: int = 0) -> Masks:
        """Masks of every member at its own sparsity ``sparsities[k]`` (formulas §1.4), into buffer ``slot`` (0 or 1).

        ``weights`` is the ``[K, N]`` matrix or its flat view, ``sparsities`` a float or 0-dim
        tensor per member, or a ``[K]`` tensor. One selection for all members;
        on the accelerator path nothing is read back: the elimination runs whenever a
        member has ``rho > 0``, its quantile 0 (nothing eliminated) where it does not apply.
        """
        if weights.dtype != self.dtype:
            raise ValueError(f"weights of dtype {weights.dtype}, the builder's buffers are {self.dtype}")
        magnitudes, layers = self.magnitudes, self.layers.segments
        magnitudes.gather(weights if weights.dim() == 1 else weights.view(-1))
        values, table, active, host_active = self._member_sparsities(sparsities)
        thresholds = magnitudes.layer_quantiles(self.thresholds.from_table(table))
        kept_flat, kept = self._kept[slot]
        compare_into("gt", magnitudes.flat, thresholds, self.thresholds.segments, kept_flat)
        kept_counts = layers.counts(kept_flat)
        masks = Masks(values, active, host_active, thresholds, kept, kept_counts, self._thetas(kept_counts), slot)
        applies = [
            False if rule is None else rule.elimination.applies(s) for rule, s in zip(self.rules, values, strict=True)
        ]
        if not any(isinstance(a, torch.Tensor) or a for a in applies):
            return masks
        assert self._eliminated is not None  # an elimination applies only with rho > 0
        eliminated_flat, eliminated = self._eliminated
        per_layer = not self.eliminations.whole_rows
        quantiles = [
            _elimination_quantiles(rule.elimination if rule else None, a, s, counts, self.layer_sizes, per_layer)
            for rule, a, s, counts in zip(self.rules, applies, values, self._member_rows(kept_counts), strict=True)
        ]
        table = quantiles[0] if len(quantiles) == 1 else torch.stack(quantiles)
        cutoffs = magnitudes.layer_quantiles(self.eliminations.from_table(table), self.eliminations.segments)
        compare_into("lt", magnitudes.flat, cutoffs, self.eliminations.segments, eliminated_flat)
        return replace(masks, eliminated=eliminated, eliminated_counts=layers.counts(eliminated_flat))

    def restore(self, kept: torch.Tensor, sparsities: Sequence[Number], slot: int) -> Masks:
        """Masks holding saved kept masks ``[K, N]`` (for the stability of the next iteration)."""
        kept_flat, rows = self._kept[slot]
        rows.copy_(kept)
        values, _, active, host_active = self._member_sparsities(sparsities)
        counts = self.layers.segments.counts(kept_flat)
        thresholds = torch.zeros(len(self.rules), dtype=self.dtype, device=self.device)
        return Masks(values, active, host_active, thresholds, rows, counts, [1.0] * len(self.rules), slot)

    def stability(self, current: Masks, previous: Masks) -> torch.Tensor:
        """Mean over layers of the Jaccard index of each member's kept sets, ``mu_k`` of formulas §3 (``[K]``)."""
        overlap_flat, overlap = self._overlap
        torch.logical_and(current.kept, previous.kept, out=overlap)
        counts = self.layers.segments.counts(overlap_flat)
        jaccard = jaccard_from_counts(counts, current.kept_counts, previous.kept_counts)
        return jaccard.mean() if len(self.rules) == 1 else jaccard.view(len(self.rules), -1).mean(dim=1)

    def threshold_per_weight(self, masks: Masks) -> torch.Tensor:
        """T of every weight, ``[K, N]`` (``[K, 1]`` when each member has one T)."""
        return self.thresholds.per_weight(masks.thresholds)

    def gradient_scale(self, masks: Masks) -> torch.Tensor | None:
        """``m`` per weight, ``[K, N]``: 1 where kept, theta where pruned, 0 where eliminated, 1 on rows not active (formulas §1.3).

        ``None`` when it is 1 everywhere. Written into the buffer of ``masks.slot``.
        """
        host_active, thetas = masks.host_active, masks.thetas
        if host_active is not None and not any(host_active):
            return None
        if masks.eliminated is None and all(not isinstance(t, torch.Tensor) and t == 1.0 for t in thetas):
            return None
        scale = self._scales[masks.slot][1]
        uniform = all(rule is None or rule.uniform_theta for rule in self.rules)
        first = thetas[0]
        if not any(isinstance(t, torch.Tensor) for t in thetas):
            if len(thetas) == 1:
                pruned = scale.new_full((), float(first))
            else:  # the members' fixed thetas (constant, Feather): a column made once per pattern
                key = tuple(float(t) for t in thetas)
                if key not in self._theta_columns:
                    self._theta_columns[key] = device_vector(thetas, self.device).to(scale.dtype)[:, None]
                pruned = self._theta_columns[key]
        elif isinstance(first, torch.Tensor) and len(thetas) == 1:  # one member: its [L] thetas, broadcast over the row
            theta = first if first.dtype == scale.dtype else first.to(scale.dtype)
            pruned = theta[:1] if uniform else self.layers.segments.spread(theta)
        else:
            rows = [device_scalar(t, self.device).to(scale.dtype).expand(len(self.sizes)) for t in thetas]
            table = torch.stack(rows)
            pruned = table[:, :1] if uniform else self.layers.per_weight(table.reshape(-1))
        if host_active is None or not all(host_active):
            pruned = torch.where(masks.active, pruned, 1.0)
        torch.where(masks.kept, scale.new_ones(()), pruned, out=scale)
        if masks.eliminated is not None:
            scale.masked_fill_(masks.eliminated, 0.0)
        return scale


def _elimination_quantiles(
    elimination: Elimination | None,
    applies: bool | torch.Tensor,
    sparsity: Number,
    kept_counts: torch.Tensor,
    layer_sizes: torch.Tensor,
    per_layer: bool,
) -> torch.Tensor:
    """The quantile of t (float64): ``rho S_k`` (global), ``rho S_{l,k}`` (layer), 0 where none applies (a 0-dim
    bool tensor ``applies`` selects unread); one per layer when ``per_layer``, else 0-dim for the member."""
    shape = kept_counts.shape if per_layer else ()
    if elimination is None or applies is False:
        return kept_counts.new_zeros(shape, dtype=torch.float64)
    if elimination.mode == "layer":
        quantiles = elimination.layer_quantiles(kept_counts, layer_sizes)
    elif isinstance(sparsity, torch.Tensor):
        quantiles = (elimination.rho * sparsity).expand(shape)
    else:
        return kept_counts.new_full(shape, elimination.rho * sparsity, dtype=torch.float64)
    return quantiles if applies is True else torch.where(applies, quantiles, 0.0)
