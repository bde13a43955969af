"""Sparse-training state of every pack member: schedule S_k, masks, stability and per-epoch metrics (formulas §1-4).

The per-member rules are the solo engine's objects (:func:`~tuneprune.sparsity.schedules.build_schedule`,
:class:`~tuneprune.sparsity.theta.ThetaPolicy`, :class:`~tuneprune.sparsity.drop.Elimination`);
the masks of all members are computed together by :class:`~tuneprune.packing.masks.PackedMaskBuilder`.
The metrics are the ones :class:`~tuneprune.sparsity.Sparsifier` reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tuneprune.packing.masks import MemberRule, PackedMaskBuilder, PackedMasks
from tuneprune.packing.ste import thresholded_weights
from tuneprune.sparsity.config import SparsityConfig
from tuneprune.sparsity.drop import Elimination
from tuneprune.sparsity.schedules import Schedule, build_schedule
from tuneprune.sparsity.stability import jaccard_from_counts
from tuneprune.sparsity.theta import build_theta_policy


class PackedSparsity:
    """Schedules, masks and mask stability of K members; ``configs[k]`` None for a dense member.

    Mirrors the solo engine step for step: before each iteration the masks at every
    member's ``S_k`` and its stability ``mu_k`` against the previous iteration's masks
    (fed to adaptive schedules, formulas §3); after the epoch's last step the masks once
    more, for evaluation and the metrics. On the accelerator path a step reads nothing
    back to the host: the ``S_k`` of adaptive schedules, fed device stabilities, are 0-dim
    tensors on the device, handed to the mask builder as they are (formulas §10.6); values
    are read in :meth:`end_epoch` and :meth:`member_state`.
    """

    def __init__(
        self,
        configs: Sequence[SparsityConfig | None],
        sizes: Sequence[int],
        steps_per_epoch: int,
        epochs: int,
        device: torch.device,
    ) -> None:
        self.steps_per_epoch = steps_per_epoch
        self.schedules: list[Schedule | None] = [
            None if c is None else build_schedule(c, steps_per_epoch, epochs) for c in configs
        ]
        rules = [
            None
            if c is None
            else MemberRule(c.threshold, build_theta_policy(c.theta, c.target), Elimination.from_config(c.drop, c.target))
            for c in configs
        ]
        sparse = [c for c in configs if c is not None]
        self.p = sparse[0].operator_p if sparse else 1.0
        self.builder = PackedMaskBuilder(sizes, rules, device)
        self.total = sum(sizes)
        self.current: PackedMasks | None = None
        self.previous: tuple[torch.Tensor, torch.Tensor] | None = None  # kept, kept_counts of the last iteration
        self.stability_sum = torch.zeros(len(configs), device=device)
        self.stability_count = 0

    @property
    def any_sparse(self) -> bool:
        return any(schedule is not None for schedule in self.schedules)

    def _masks_at(self, step: int, weights: torch.Tensor) -> PackedMasks:
        return self.builder.build(weights, [0.0 if s is None else s.sparsity_at(step) for s in self.schedules])

    def before_iteration(self, step: int, weights: torch.Tensor) -> None:
        """Masks at every member's ``S_k``; ``mu_k`` against the previous iteration (formulas §3)."""
        if not self.any_sparse:
            return
        masks = self._masks_at(step, weights)
        if self.previous is not None:
            previous_kept, previous_counts = self.previous
            overlap = self.builder.layer_counts(masks.kept & previous_kept)
            mu = jaccard_from_counts(overlap, masks.kept_counts, previous_counts).mean(dim=1)
            self.stability_sum += mu
            self.stability_count += 1
            for k, schedule in enumerate(self.schedules):
                if schedule is not None:
                    schedule.observe(step, mu[k])
        self.current = masks
        self.previous = masks.kept, masks.kept_counts

    def thresholded(self, weights: torch.Tensor) -> torch.Tensor:
        """``[K, N]`` weights of the forward pass: ``P_T(w)`` with the scaled STE, or ``w`` for dense rows."""
        if self.current is None:
            return weights
        return thresholded_weights(weights, self.current, self.p)

    def end_epoch(self, epoch: int, weights: torch.Tensor) -> list[dict[str, float]]:
        """Masks after the epoch's last step (formulas §1.4) and each member's metrics ({} for dense ones).

        The keys and meanings are :meth:`tuneprune.sparsity.Sparsifier.end_epoch`'s.
        """
        if not self.any_sparse:
            return [{} for _ in self.schedules]
        masks = self.current = self._masks_at((epoch + 1) * self.steps_per_epoch, weights)
        count = self.stability_count
        stability = (self.stability_sum / max(count, 1)).tolist()
        self.stability_sum.zero_()
        self.stability_count = 0
        kept, thetas = masks.kept_counts.cpu(), masks.thetas.cpu()
        eliminated = masks.eliminated_counts.cpu() if masks.eliminated_counts is not None else torch.zeros_like(kept)
        layer_sizes = self.builder.layer_sizes.cpu()
        metrics: list[dict[str, float]] = []
        for k, schedule in enumerate(self.schedules):
            if schedule is None:
                metrics.append({})
                continue
            sparsity = float(masks.sparsities[k])
            zero_gradient = 0
            if sparsity > 0:
                pruned = layer_sizes - kept[k] - eliminated[k]
                zero_gradient = int((eliminated[k] + torch.where(thetas[k] == 0, pruned, 0)).sum())
            metrics.append(
                {
                    "sparsity_k": sparsity,
                    "sparsity": 1.0 - int(kept[k].sum()) / self.total,
                    "theta": float(thetas[k].mean()),
                    "mask_stability": stability[k] if count else 1.0,
                    "lambda": schedule.lam,
                    "eliminated": zero_gradient / self.total,
                }
            )
        return metrics

    def keep(self, rows: Sequence[int]) -> None:
        """Go on with the members at ``rows`` only."""
        self.schedules = [self.schedules[i] for i in rows]
        self.builder.keep(rows)
        index = torch.tensor(list(rows), dtype=torch.long, device=self.stability_sum.device)
        self.stability_sum = self.stability_sum.index_select(0, index)
        self.current = self.current.rows(rows) if self.current is not None else None
        if self.previous is not None:
            previous_kept, previous_counts = self.previous
            self.previous = (previous_kept.index_select(0, index), previous_counts.index_select(0, index))

    def member_state(self, row: int) -> dict[str, Any] | None:
        """What member ``row`` needs to go on from an epoch's end: its schedule's state and last kept mask (for mu, formulas §3).

        None for a dense member. The mask is the ``[N]`` row of the last iteration's, on the CPU.
        """
        schedule = self.schedules[row]
        if schedule is None:
            return None
        previous = None if self.previous is None else self.previous[0][row].cpu().clone()
        return {"schedule": schedule.state_dict(), "previous_kept": previous}

    def restore(self, states: Sequence[dict[str, Any] | None], step: int, weights: torch.Tensor) -> None:
        """Go on from the :meth:`member_state` of each member (None if dense) at the epoch boundary ``step`` > 0.

        The current masks are rebuilt from the weights as :meth:`end_epoch` built them; a
        dense row's previous mask (its mu is never used) is its current one.
        """
        for schedule, state in zip(self.schedules, states, strict=True):
            if schedule is not None:
                assert state is not None  # a sparse member has its state
                schedule.load_state_dict(state["schedule"])
        if not self.any_sparse:
            return
        self.current = self._masks_at(step, weights)
        saved = [None if state is None else state["previous_kept"] for state in states]
        kept = torch.stack(
            [current if row is None else row.to(current.device) for current, row in zip(self.current.kept, saved, strict=True)]
        )
        self.previous = kept, self.builder.layer_counts(kept)
