"""Feather sparse training of any model, in the training loop of tuneprune or of a user (formulas §1-§4)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from tuneprune.sparsity.config import SparsityConfig
from tuneprune.sparsity.drop import Elimination
from tuneprune.sparsity.flat import flatten_parameters
from tuneprune.sparsity.layers import original_weight, prunable_layers
from tuneprune.sparsity.masks import MaskBuilder, Masks
from tuneprune.sparsity.schedules import Schedule, build_schedule
from tuneprune.sparsity.ste import FlatThreshold, ThresholdedWeight
from tuneprune.sparsity.theta import ConstantTheta, ThetaPolicy, build_theta_policy


class Sparsifier:
    """Wraps every prunable layer of ``model`` with ``w~ = P_T(w)`` and the scaled STE (formulas §1.2, §1.3).

    ``schedule`` gives ``S_k`` (:mod:`~tuneprune.sparsity.schedules`), ``theta`` the gradient
    scale of pruned weights per layer (:mod:`~tuneprune.sparsity.theta`; constant 1 when
    ``None``), ``p`` the exponent of the thresholding operator, ``threshold`` one global T
    or one T_l per layer, ``elimination`` the drop of the smallest pruned weights (formulas §4;
    none when ``None``). :meth:`from_config` builds all of them from a :class:`SparsityConfig`.

    Implements the :class:`~tuneprune.training.hooks.TrainHook` protocol and counts its own
    iterations. Before each iteration it takes ``S_k`` from the schedule, recomputes the
    threshold(s), theta per layer, the elimination threshold and the mask stability ``mu_k``
    (fed to the schedule), once, for forward and backward. Move the model to its device
    before and build the optimizer after the Sparsifier: it trains the dense weights
    (``parametrizations.weight.original``), which it moves into one flat buffer on that
    device (each keeps its identity and becomes a view of the buffer), so that the
    per-iteration work is a few passes over that buffer rather than a few per layer. On the
    accelerator path :meth:`before_iteration` reads nothing back to the host (``S_k``,
    ``mu_k`` and all derived from them stay tensors on the device, formulas §10.6); values
    are read at :meth:`end_epoch`, :meth:`metrics` and :meth:`state_dict`.
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: Schedule,
        theta: ThetaPolicy | None = None,
        p: float = 3.0,
        threshold: Literal["global", "layer"] = "global",
        elimination: Elimination | None = None,
        min_size: int = 0,
    ) -> None:
        layers = prunable_layers(model, min_size)
        if not layers:
            raise ValueError("the model has no prunable layers (Conv2d/Linear with at least min_size weights)")
        self.model = model
        self.schedule = schedule
        self.theta_policy = theta if theta is not None else ConstantTheta(1.0)
        self.threshold = threshold
        self.names = [name for name, _ in layers]
        self._modules = [module for _, module in layers]
        self._parameter_order = [list(module._parameters) for module in self._modules]
        parametrizations = [ThresholdedWeight(None, i) for i in range(len(layers))]
        for module, parametrization in zip(self._modules, parametrizations, strict=True):
            parametrize.register_parametrization(module, "weight", parametrization)
        weights = [original_weight(module) for module in self._modules]
        self._layout, self._flat = flatten_parameters(weights)
        self._ste = FlatThreshold(self._layout, self._flat, weights, p)
        for parametrization in parametrizations:
            parametrization.shared = self._ste
        no_elimination = Elimination(rho=0.0, final_sparsity=1.0)
        self._builder = MaskBuilder(self._layout, threshold, elimination if elimination is not None else no_elimination)
        self._scale_buffers: list[torch.Tensor] = []
        self._scale_views: list[list[torch.Tensor]] = []
        self._current: Masks | None = None
        self._previous: Masks | None = None
        self._thetas: float | torch.Tensor = 1.0
        self.iteration = 0
        self._stability_sum = torch.zeros((), device=self._flat.device)
        self._stability_count = 0
        self._epoch_stabilities: list[float] = []

    @classmethod
    def from_config(cls, model: nn.Module, config: SparsityConfig, steps_per_epoch: int, epochs: int) -> Sparsifier:
        """The Sparsifier ``config`` describes for a run of ``epochs`` epochs of ``steps_per_epoch`` iterations."""
        return cls(
            model,
            schedule=build_schedule(config, steps_per_epoch, epochs),
            theta=build_theta_policy(config.theta, config.target),
            p=config.operator_p,
            threshold=config.threshold,
            elimination=Elimination.from_config(config.drop, config.target),
            min_size=config.min_size,
        )

    def _apply(self, sparsity: float | torch.Tensor, slot: int) -> Masks:
        """Compute the masks at ``sparsity`` and install ``P_T`` and the gradient scale ``m`` (formulas §1.2, §1.3).

        ``S_k = 0`` prunes nothing: ``w`` itself, ``m = 1``. On the CPU path that is a Python
        branch on the float; on the accelerator path ``S_k > 0`` stays a 0-dim tensor that
        selects between the two inside the forward pass and the scale (formulas §10.6).
        """
        masks = self._builder.build(self._flat, sparsity, slot)
        thetas = self.theta_policy.layer_thetas(masks.kept_counts / self._builder.layer_sizes)
        self._current, self._thetas = masks, thetas
        active = masks.sparsity > 0 if isinstance(masks.sparsity, torch.Tensor) else None
        if active is None and masks.sparsity <= 0:
            self._ste.clear()
            return masks
        segments = self._layout.segments
        threshold = masks.thresholds[0] if self.threshold == "global" else segments.spread(masks.thresholds)
        self._ste.set(threshold, self._gradient_scale(masks, thetas, slot, active), active)
        return masks

    def _gradient_scale(
        self, masks: Masks, thetas: float | torch.Tensor, slot: int, active: torch.Tensor | None
    ) -> list[torch.Tensor] | None:
        """``m`` per layer: 1 where kept, theta where pruned, 0 where eliminated (formulas §1.3); ``None`` when all ones.

        ``active`` (accelerator path): where ``S_k > 0`` is False, theta is replaced by 1
        (nothing is eliminated at ``S_k = 0``), so ``m`` is all ones as the CPU path's.
        """
        if masks.eliminated_flat is None and not isinstance(thetas, torch.Tensor) and thetas == 1.0:
            return None
        if not self._scale_buffers:
            self._scale_buffers = [self._layout.empty() for _ in range(2)]
            self._scale_views = [self._layout.shaped(buffer) for buffer in self._scale_buffers]
        scale = self._scale_buffers[slot]
        pruned = thetas.to(scale.dtype) if isinstance(thetas, torch.Tensor) else scale.new_full((), thetas)
        if active is not None:
            pruned = torch.where(active, pruned, 1.0)
        if pruned.dim():
            pruned = self._layout.segments.spread(pruned)
        torch.where(masks.kept_flat, scale.new_ones(()), pruned, out=scale)
        if masks.eliminated_flat is not None:
            scale.masked_fill_(masks.eliminated_flat, 0.0)
        return self._scale_views[slot]

    def _free_slot(self) -> int:
        return 0 if self._previous is None else 1 - self._previous.slot

    def before_iteration(self) -> None:
        """Masks at ``S_k`` for the next iteration ``k``; ``mu_k`` against the previous iteration's masks (formulas §3, §9)."""
        step = self.iteration
        masks = self._apply(self.schedule.sparsity_at(step), self._free_slot())
        if self._previous is not None:
            mu = self._builder.stability(masks, self._previous)
            self._stability_sum += mu
            self._stability_count += 1
            self.schedule.observe(step, mu)
        self._previous = masks
        self.iteration += 1

    def after_backward(self) -> None:
        """Nothing: the gradient scale is applied inside the backward pass."""

    def end_epoch(self) -> None:
        """Recompute the masks after the epoch's last optimizer step (formulas §1.4) and close the epoch's stability mean."""
        self._apply(self.schedule.sparsity_at(self.iteration), self._free_slot())
        stability = float(self._stability_sum / self._stability_count) if self._stability_count else 1.0
        self._epoch_stabilities.append(stability)
        self._stability_sum.zero_()
        self._stability_count = 0

    @property
    def mean_mask_stability(self) -> float:
        """The stability objective: the mean over the finished epochs of their mean ``mu`` (formulas §3); 1.0 before any."""
        stabilities = self._epoch_stabilities
        return sum(stabilities) / len(stabilities) if stabilities else 1.0

    def metrics(self) -> dict[str, float]:
        """The current masks' metrics, as of the last :meth:`end_epoch` for the stabilities.

        ``sparsity_k`` the schedule's current sparsity, ``sparsity`` the achieved fraction of
        pruned prunable weights, ``theta`` the mean over layers, ``mask_stability`` the mean
        ``mu`` over the last epoch's iterations (1.0 when none was measured),
        ``mean_mask_stability`` its mean over the epochs, ``lambda`` the adaptive
        scheduler's lambda (0 otherwise), ``eliminated`` the fraction of prunable weights
        whose gradient is zero.
        """
        masks = self._current
        if masks is None:
            raise RuntimeError("no masks yet: call before_iteration() or end_epoch() first")
        total = sum(self._builder.sizes)
        sparsity_k = float(masks.sparsity)
        return {
            "sparsity_k": sparsity_k,
            "sparsity": 1.0 - float(masks.kept_counts.sum()) / total,
            "theta": float(self._theta_tensor().mean()),
            "mask_stability": self._epoch_stabilities[-1] if self._epoch_stabilities else 1.0,
            "mean_mask_stability": self.mean_mask_stability,
            "lambda": self.schedule.lam,
            "eliminated": float(self._zero_gradient_counts(masks, sparsity_k).sum()) / total,
        }

    def _theta_tensor(self) -> torch.Tensor:
        return torch.as_tensor(self._thetas, dtype=torch.float32).expand(len(self.names))

    def _zero_gradient_counts(self, masks: Masks, sparsity_k: float) -> torch.Tensor:
        """Per layer: eliminated weights plus pruned ones of layers whose theta is 0 (formulas §1.3)."""
        if sparsity_k <= 0:
            return torch.zeros(len(self.names))
        eliminated = masks.eliminated_counts
        if eliminated is None:
            eliminated = torch.zeros_like(masks.kept_counts)
        pruned = self._builder.layer_sizes - masks.kept_counts - eliminated
        return (eliminated + torch.where(self._theta_tensor().to(pruned.device) == 0, pruned, 0)).cpu()

    @property
    def layer_sparsity(self) -> dict[str, float]:
        """Achieved sparsity of each prunable layer under the current threshold(s)."""
        if self._current is None:
            return dict.fromkeys(self.names, 0.0)
        fractions = 1.0 - self._current.kept_counts / self._builder.layer_sizes
        return dict(zip(self.names, fractions.tolist(), strict=True))

    @property
    def layer_theta(self) -> dict[str, float]:
        """theta of each prunable layer at the current iteration."""
        return dict(zip(self.names, self._theta_tensor().tolist(), strict=True))

    def state_dict(self) -> dict[str, Any]:
        """Iteration count, stabilities, schedule state, the current sparsity and the previous kept mask (for ``mu``)."""
        return {
            "iteration": self.iteration,
            "stability_sum": self._stability_sum.clone(),
            "stability_count": self._stability_count,
            "epoch_stabilities": list(self._epoch_stabilities),
            "schedule": self.schedule.state_dict(),
            "sparsity": float(self._current.sparsity) if self._current is not None else None,
            "previous_kept": self._previous.kept_flat.clone() if self._previous is not None else None,
            "previous_sparsity": float(self._previous.sparsity) if self._previous is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore after the model's weights, so that the installed masks match them."""
        self.iteration = state["iteration"]
        self._stability_sum.copy_(state["stability_sum"])
        self._stability_count = state["stability_count"]
        self._epoch_stabilities = list(state["epoch_stabilities"])
        self.schedule.load_state_dict(state["schedule"])
        self._previous = None
        if state["previous_kept"] is not None:
            self._previous = self._builder.restore(state["previous_kept"], state["previous_sparsity"], slot=0)
        if state["sparsity"] is not None:
            self._apply(state["sparsity"], self._free_slot())

    @torch.no_grad()
    def finalize(self) -> nn.Module:
        """Remove the parametrizations, leaving ``P_T(w)`` with exact zeros as plain weights.

        The returned model (``self.model``) has the state_dict keys of the unwrapped model;
        the Sparsifier is no longer attached to it (a second call returns it unchanged).
        """
        if not self._modules:
            return self.model
        if self._current is not None:
            self._apply(self._current.sparsity, self._free_slot())
        for module, order in zip(self._modules, self._parameter_order, strict=True):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            for name in order:  # re-insert so that the state_dict order is the unwrapped model's
                module._parameters[name] = module._parameters.pop(name)
        self._modules = []
        return self.model
