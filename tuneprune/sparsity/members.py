"""Sparse-training state of K members: schedule S_k, masks, mask stability and per-epoch metrics (formulas §1-§4).

The one engine behind :class:`~tuneprune.sparsity.Sparsifier` (one model, K = 1) and
the packed trainer (:mod:`tuneprune.training`, K trials in one process).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tuneprune.sparsity.config import SparsityConfig
from tuneprune.sparsity.drop import Elimination
from tuneprune.sparsity.masks import MaskBuilder, Masks, MemberRule
from tuneprune.sparsity.rows import take_members
from tuneprune.sparsity.schedules import Schedule, build_schedule
from tuneprune.sparsity.theta import build_theta_policy


def member_rule(config: SparsityConfig) -> MemberRule:
    """The rule ``config`` describes: threshold mode, theta policy and elimination."""
    return MemberRule(
        config.threshold,
        build_theta_policy(config.theta, config.target),
        Elimination.from_config(config.drop, config.target),
    )


class MemberSparsity:
    """Schedules, masks and mask stability of K members over the ``[K, N]`` weights; ``schedules[k]`` None: dense.

    The masks of all members are built together by :class:`~tuneprune.sparsity.masks.MaskBuilder`,
    each by its own rule (``rules[k]``, None: dense). On the accelerator path an iteration reads
    nothing back to the host (formulas §10.6); values are read in :meth:`end_epoch`,
    :meth:`metrics` and :meth:`member_state`.
    """

    def __init__(
        self,
        schedules: Sequence[Schedule | None],
        rules: Sequence[MemberRule | None],
        sizes: Sequence[int],
        device: torch.device,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.schedules = list(schedules)
        self.builder = MaskBuilder(sizes, rules, device, dtype)
        self.total = sum(sizes)
        self.current: Masks | None = None
        self.previous: Masks | None = None  # the masks of the last iteration, for mu
        self.scale: torch.Tensor | None = None  # m of the current masks, None when all ones
        self.sparsities: list[float | torch.Tensor] | None = None  # S_k of the current masks (kept by keep())
        self.stability_sum = torch.zeros(len(self.schedules), device=device)
        self.stability_count = 0
        self.epoch_stabilities: list[list[float]] = [[] for _ in self.schedules]

    @classmethod
    def from_configs(
        cls,
        configs: Sequence[SparsityConfig | None],
        sizes: Sequence[int],
        steps_per_epoch: int,
        epochs: int,
        device: torch.device,
    ) -> MemberSparsity:
        """The members ``configs`` describe (None: dense) for runs of ``epochs`` epochs of ``steps_per_epoch`` iterations."""
        schedules = [None if c is None else build_schedule(c, steps_per_epoch, epochs) for c in configs]
        return cls(schedules, [None if c is None else member_rule(c) for c in configs], sizes, device)

    def _sparsities_at(self, step: int) -> list[float | torch.Tensor]:
        return [0.0 if s is None else s.sparsity_at(step) for s in self.schedules]

    def _install(self, weights: torch.Tensor, sparsities: Sequence[float | torch.Tensor]) -> Masks:
        """Masks at ``sparsities`` into the slot the previous iteration's masks do not hold, and their ``m``."""
        slot = 1 if self.previous is not None and self.previous.slot == 0 else 0
        masks = self.current = self.builder.build(weights, sparsities, slot)
        self.scale = self.builder.gradient_scale(masks)
        self.sparsities = masks.sparsities
        return masks

    def before_iteration(self, step: int, weights: torch.Tensor) -> Masks:
        """Masks and ``m`` at every member's ``S_k`` of iteration ``step`` (formulas §1.3, §1.4); ``mu_k`` against the
        previous iteration's masks, fed to the member's schedule (formulas §3)."""
        masks = self._install(weights, self._sparsities_at(step))
        if self.previous is not None:
            mu = self.builder.stability(masks, self.previous)
            self.stability_sum += mu
            self.stability_count += 1
            for schedule, value in zip(self.schedules, [mu] if mu.dim() == 0 else mu.unbind(), strict=True):
                if schedule is not None:
                    schedule.observe(step, value)
        self.previous = masks
        return masks

    def end_epoch(self, step: int, weights: torch.Tensor) -> Masks:
        """Masks at ``S_k`` of ``step`` (the next epoch's first) on the weights after the epoch's last optimizer step
        (formulas §1.4), and each member's mean ``mu`` over the epoch (1.0 when none was measured)."""
        masks = self._install(weights, self._sparsities_at(step))
        means = (self.stability_sum / self.stability_count).tolist() if self.stability_count else None
        for k, stabilities in enumerate(self.epoch_stabilities):
            stabilities.append(means[k] if means is not None else 1.0)
        self.stability_sum.zero_()
        self.stability_count = 0
        return masks

    def rebuild(self, weights: torch.Tensor) -> Masks:
        """The current masks again, at their sparsities, on the weights as they are now (stability untouched)."""
        assert self.sparsities is not None  # masks were built before
        return self._install(weights, self.sparsities)

    def metrics(self) -> list[dict[str, float]]:
        """Each member's metrics of the current masks ({} for a dense one), the stabilities as of the last :meth:`end_epoch`.

        ``sparsity_k`` the schedule's current sparsity, ``sparsity`` the achieved fraction of
        pruned prunable weights, ``theta`` the mean over layers, ``mask_stability`` the mean
        ``mu`` over the last epoch's iterations (1.0 when none was measured),
        ``mean_mask_stability`` its mean over the epochs (the stability objective, formulas
        §3), ``lambda`` the adaptive scheduler's lambda (0 otherwise), ``eliminated`` the
        fraction of prunable weights whose gradient is zero: eliminated ones plus the pruned
        ones of layers whose theta is 0 (formulas §1.3).
        """
        masks = self.current
        if masks is None:
            raise RuntimeError("no masks yet: call before_iteration() or end_epoch() first")
        kept, thetas, counts = masks.table(masks.kept_counts).cpu(), masks.layer_thetas(), masks.eliminated_counts
        eliminated = torch.zeros_like(kept) if counts is None else masks.table(counts).cpu()
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
            stabilities = self.epoch_stabilities[k]
            metrics.append(
                {
                    "sparsity_k": sparsity,
                    "sparsity": 1.0 - int(kept[k].sum()) / self.total,
                    "theta": float(thetas[k].mean()),
                    "mask_stability": stabilities[-1] if stabilities else 1.0,
                    "mean_mask_stability": sum(stabilities) / len(stabilities) if stabilities else 1.0,
                    "lambda": schedule.lam,
                    "eliminated": zero_gradient / self.total,
                }
            )
        return metrics

    def layer_sparsity(self, row: int) -> list[float]:
        """Achieved sparsity of each prunable layer of member ``row`` under its current threshold(s)."""
        if self.current is None:
            return [0.0] * len(self.builder.sizes)
        return (1.0 - self.current.table(self.current.kept_counts)[row] / self.builder.layer_sizes).tolist()

    def keep(self, rows: Sequence[int]) -> None:
        """Go on with the members at ``rows`` only."""
        self.schedules = take_members(self.schedules, rows)
        self.epoch_stabilities = take_members(self.epoch_stabilities, rows)
        self.builder.keep(rows)
        self.stability_sum = take_members(self.stability_sum, rows)
        self.current, self.scale = None, None  # the next iteration (or end of epoch) builds them
        self.sparsities = take_members(self.sparsities, rows)
        previous, self.previous = self.previous, None
        if previous is not None and rows:  # the kept masks, in the new buffers, for the next mu
            kept, sparsities = take_members(previous.kept, rows), take_members(previous.sparsities, rows)
            self.previous = self.builder.restore(kept, sparsities, slot=0)

    def member_state(self, row: int) -> dict[str, Any] | None:
        """Everything member ``row`` needs to go on where it is: plain values and CPU tensors; None for a dense member.

        Its schedule's state, the sparsity of its current masks, its last iteration's kept
        mask and sparsity (for the next ``mu``, formulas §3) and its stabilities.
        """
        schedule = self.schedules[row]
        if schedule is None:
            return None
        sparsities, previous = self.sparsities, self.previous
        return {
            "schedule": schedule.state_dict(),
            "sparsity": None if sparsities is None else float(sparsities[row]),
            "previous_kept": None if previous is None else previous.kept[row].cpu().clone(),
            "previous_sparsity": None if previous is None else float(previous.sparsities[row]),
            "stability_sum": self.stability_sum[row].cpu().clone(),
            "stability_count": self.stability_count,
            "epoch_stabilities": list(self.epoch_stabilities[row]),
        }

    def restore(self, states: Sequence[dict[str, Any] | None], weights: torch.Tensor) -> None:
        """Go on from each member's :meth:`member_state` (None if dense), the weights already restored.

        The current masks are rebuilt at their saved sparsities; a member saved before any
        iteration (or a dense one) has no previous mask, and one's missing previous mask
        is its current one (its ``mu`` is then 1 for the first iteration).
        """
        for k, (schedule, state) in enumerate(zip(self.schedules, states, strict=True)):
            if schedule is None:
                continue
            assert state is not None  # a sparse member has its state
            schedule.load_state_dict(state["schedule"])
            self.stability_sum[k] = state["stability_sum"]
            self.epoch_stabilities[k] = list(state["epoch_stabilities"])
        sparse = [state for state in states if state is not None]
        self.stability_count = sparse[0]["stability_count"] if sparse else 0
        if not sparse or all(state["sparsity"] is None for state in sparse):
            return
        sparsities = [0.0 if state is None else state["sparsity"] for state in states]
        previous = [None if state is None else state["previous_kept"] for state in states]
        if any(kept is not None for kept in previous):
            current = self.builder.build(weights, sparsities, 1).kept  # a missing row is the current mask
            kept = torch.stack(
                [now if row is None else row.to(now.device) for now, row in zip(current, previous, strict=True)]
            )
            before = [
                s if state is None or state["previous_sparsity"] is None else state["previous_sparsity"]
                for s, state in zip(sparsities, states, strict=True)
            ]
            self.previous = self.builder.restore(kept, before, slot=0)
        self._install(weights, sparsities)
