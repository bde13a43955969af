"""Feather sparse training of any model, in the training loop of tuneprune or of a user (formulas §1-§4)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from tuneprune.sparsity.config import SparsityConfig
from tuneprune.sparsity.drop import Elimination
from tuneprune.sparsity.flat import flatten_parameters
from tuneprune.sparsity.layers import original_weight, pruned_layers
from tuneprune.sparsity.masks import Masks, MemberRule
from tuneprune.sparsity.members import MemberSparsity, member_rule
from tuneprune.sparsity.schedules import Schedule, build_schedule
from tuneprune.sparsity.ste import FlatThreshold, ThresholdedWeight
from tuneprune.sparsity.theta import ConstantTheta, ThetaPolicy


class Sparsifier:
    """Wraps every prunable layer of ``model`` with ``w~ = P_T(w)`` and the scaled STE (formulas §1.2, §1.3).

    ``schedule`` gives ``S_k`` (:mod:`~tuneprune.sparsity.schedules`), ``theta`` the gradient
    scale of pruned weights per layer (:mod:`~tuneprune.sparsity.theta`; constant 1 when
    ``None``), ``p`` the exponent of the thresholding operator, ``threshold`` one global T
    or one T_l per layer, ``elimination`` the drop of the smallest pruned weights (formulas §4;
    none when ``None``). :meth:`from_config` builds all of them from a :class:`SparsityConfig`.

    A :class:`~tuneprune.training.hooks.TrainHook` that counts its own iterations. Move the
    model to its device before and build the optimizer after the Sparsifier: it trains the
    dense weights (``parametrizations.weight.original``), moved into one flat buffer on that
    device (each a view of it, its identity kept), so that an iteration's work is a few
    passes over that buffer. On the accelerator path :meth:`before_iteration` reads nothing
    back to the host (formulas §10.6); values are read at :meth:`end_epoch`,
    :meth:`metrics` and :meth:`state_dict`.
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
        layers = pruned_layers(model, min_size)
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
        self._ste = FlatThreshold(self._layout, self._flat, weights, p, layer_thresholds=threshold == "layer")
        for parametrization in parametrizations:
            parametrization.shared = self._ste
        rule = MemberRule(threshold, self.theta_policy, elimination or Elimination(rho=0.0, final_sparsity=1.0))
        self._engine = MemberSparsity([schedule], [rule], self._layout.sizes, self._flat.device, self._layout.dtype)
        self._scale_views: dict[int, list[torch.Tensor]] = {}  # per-layer views of each of the engine's m buffers
        self.iteration = 0

    @classmethod
    def from_config(cls, model: nn.Module, config: SparsityConfig, steps_per_epoch: int, epochs: int) -> Sparsifier:
        """The Sparsifier ``config`` describes for a run of ``epochs`` epochs of ``steps_per_epoch`` iterations."""
        rule = member_rule(config)
        return cls(
            model,
            schedule=build_schedule(config, steps_per_epoch, epochs),
            theta=rule.theta_policy,
            p=config.operator_p,
            threshold=config.threshold,
            elimination=rule.elimination,
            min_size=config.min_size,
        )

    def _install(self, masks: Masks) -> None:
        """Install ``P_T`` and the gradient scale ``m`` of ``masks`` in the forward and backward passes (formulas §1.2, §1.3)."""
        scale = self._engine.scale  # [1, N], or None when all ones
        if scale is not None and id(scale) not in self._scale_views:
            self._scale_views[id(scale)] = self._layout.shaped(scale.view(-1))
        views = None if scale is None else self._scale_views[id(scale)]
        self._ste.install(masks, masks.thresholds, views)  # T: [1] global, else per layer

    def before_iteration(self) -> None:
        """Masks at ``S_k`` for the next iteration ``k``; ``mu_k`` against the previous iteration's masks (formulas §3, §9)."""
        self._install(self._engine.before_iteration(self.iteration, self._flat))
        self.iteration += 1

    def after_backward(self) -> None:
        """Nothing: the gradient scale is applied inside the backward pass."""

    def end_epoch(self) -> None:
        """Recompute the masks after the epoch's last optimizer step (formulas §1.4) and close the epoch's stability mean."""
        self._install(self._engine.end_epoch(self.iteration, self._flat))

    @property
    def mean_mask_stability(self) -> float:
        """The stability objective: the mean over the finished epochs of their mean ``mu`` (formulas §3); 1.0 before any."""
        stabilities = self._engine.epoch_stabilities[0]
        return sum(stabilities) / len(stabilities) if stabilities else 1.0

    def metrics(self) -> dict[str, float]:
        """The current masks' metrics (the stabilities as of the last :meth:`end_epoch`), the keys and meanings of
        :meth:`tuneprune.sparsity.members.MemberSparsity.metrics`."""
        return self._engine.metrics()[0]

    @property
    def layer_sparsity(self) -> dict[str, float]:
        """Achieved sparsity of each prunable layer under the current threshold(s)."""
        return dict(zip(self.names, self._engine.layer_sparsity(0), strict=True))

    @property
    def layer_theta(self) -> dict[str, float]:
        """theta of each prunable layer at the current iteration."""
        masks = self._engine.current
        thetas = masks.layer_thetas()[0].tolist() if masks is not None else [1.0] * len(self.names)
        return dict(zip(self.names, thetas, strict=True))

    def state_dict(self) -> dict[str, Any]:
        """Iteration count and the engine's state of this model (:meth:`MemberSparsity.member_state`)."""
        state = self._engine.member_state(0)
        assert state is not None  # the one member is sparse
        return {"iteration": self.iteration, **state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore after the model's weights, so that the installed masks match them."""
        self.iteration = state["iteration"]
        self._engine.restore([state], self._flat)
        if self._engine.current is not None:
            self._install(self._engine.current)

    @torch.no_grad()
    def finalize(self) -> nn.Module:
        """Remove the parametrizations, leaving ``P_T(w)`` with exact zeros as plain weights.

        The returned model (``self.model``) has the state_dict keys of the unwrapped model;
        the Sparsifier is no longer attached to it (a second call returns it unchanged).
        """
        if not self._modules:
            return self.model
        if self._engine.current is not None:  # P_T of the weights after the last optimizer step
            self._install(self._engine.rebuild(self._flat))
        for module, order in zip(self._modules, self._parameter_order, strict=True):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            for name in order:  # re-insert so that the state_dict order is the unwrapped model's
                module._parameters[name] = module._parameters.pop(name)
        self._modules = []
        return self.model
