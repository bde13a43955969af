"""K copies of one architecture as stacked tensors: ``[K, ...]`` parameters and buffers, one forward for all.

The parameters are three flat leaves at most (:class:`StackedModel`; why:
:mod:`~tuneprune.training.optim`). The forward runs each member on its own batch, under ``torch.vmap`` over
``torch.func.functional_call`` (fused: batched/grouped kernels) or as a loop of
``functional_call`` (``loop``), whichever is faster on the device (``scripts/bench_pack.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
from torch.func import functional_call, stack_module_state

from tuneprune.sparsity.dispatch import on_numpy
from tuneprune.sparsity.flat import FlatLayout, storage_order
from tuneprune.sparsity.layers import parametrized_order
from tuneprune.sparsity.rows import take_members
from tuneprune.training.optim import has_weight_decay

FORWARD_MODES = ("vmap", "loop")


def _members(stacked: torch.Tensor) -> Sequence[torch.Tensor]:
    """The members' tensors of a ``[K, ...]`` tensor, as views. One member's is ``squeeze(0)``, whose backward is
    a view as well (``unbind``'s stacks the gradients: a copy per tensor, on CUDA a kernel each)."""
    return (stacked.squeeze(0),) if len(stacked) == 1 else stacked.unbind(0)


def join_members(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`_members`: ``[K, ...]`` of the members' tensors; one member's is a view (``unsqueeze``)."""
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(list(tensors))


class StackedModel:
    """Parameters and buffers of ``models`` (same architecture) stacked along a new first dimension.

    ``leaves`` (:meth:`parameters`) are flat ``[K, M]`` tensors, each laid out by its entry
    of ``layouts`` (:class:`~tuneprune.sparsity.flat.FlatLayout`): first ``weights``, the
    parameters named ``prunable`` (in that order), then the other parameters with weight decay
    (formulas §1.1), then those without, each leaf present when it has a parameter. Parameters that do not require a gradient (a frozen
    BatchNorm) are ``constants``, ``[K, ...]`` and never updated. ``buffers`` (BatchNorm
    statistics) are ``[K, ...]`` and updated in place by the forward. The forward runs
    ``models`` with their modules' own training modes (:meth:`set_training`; a hook may set
    some to eval): member k's under ``loop``, member 0's for all under ``vmap``.
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        prunable: Sequence[str],
        forward_mode: str = "loop",
        memory_format: torch.memory_format = torch.contiguous_format,
        sparse: Sequence[bool] | None = None,
    ) -> None:
        if forward_mode not in FORWARD_MODES:
            raise ValueError(f"forward_mode = {forward_mode!r}, allowed: {', '.join(FORWARD_MODES)}")
        shapes = [[(name, t.shape) for name, t in [*m.named_parameters(), *m.named_buffers()]] for m in models]
        for k, model_shapes in enumerate(shapes[1:], start=1):
            if model_shapes != shapes[0]:
                raise ValueError(
                    f"models[{k}] differs from models[0] in its parameters or buffers (names or shapes): "
                    "the members of a pack share one architecture"
                )
        params, self.buffers = stack_module_state(list(models))
        self.models = list(models)
        self.prunable = list(prunable)
        # each member's parameters in the order clip_grad_norm_ meets them alone: its prunable weights parametrized
        # by the Sparsifier when it is sparse (all members when ``sparse`` is None), in their places when dense
        flags = [bool(self.prunable)] * len(self.models) if sparse is None else list(sparse)
        by_flag = {flag: parametrized_order(models[0], frozenset(self.prunable if flag else ())) for flag in set(flags)}
        self.clip_orders = [by_flag[flag] for flag in flags]
        self.constants = {name: p for name, p in params.items() if not p.requires_grad}
        others = [name for name in params if name not in self.prunable and name not in self.constants]
        orders = {name: storage_order(p) for name, p in models[0].named_parameters()}  # as alone (channels_last)
        decayed = [name for name in others if has_weight_decay(params[name][0])]
        groups = [(self.prunable, True), (decayed, True), ([n for n in others if n not in decayed], False)]
        first = params[next(iter(params))]
        self.layouts = [
            FlatLayout(
                [params[name].shape[1:] for name in names], [orders[name] for name in names], first.device, names=names
            )
            for names, _ in groups
            if names
        ]
        self._decays = [decay for names, decay in groups if names]
        self.leaves = [
            layout.flatten([params[n] for n in layout.names]).detach().requires_grad_() for layout in self.layouts
        ]
        self.forward_mode = forward_mode
        self.memory_format = memory_format  # of each member's batches
        self._vmapped = torch.vmap(self._member_forward, in_dims=(0, 0, 0), randomness="error")
        # functional_call ties a tensor held under two names only when told to: a search of every module per call
        named = [*models[0].named_parameters(remove_duplicate=False), *models[0].named_buffers(remove_duplicate=False)]
        self._ties = len({id(t) for _, t in named}) < len(named)
        self._bind_models()

    @property
    def weights(self) -> torch.Tensor | None:
        """The ``[K, N]`` leaf of the prunable weights; None without any."""
        return self.leaves[0] if self.prunable else None

    @property
    def sizes(self) -> list[int]:
        """The prunable parameters' sizes: their segments of a row of ``weights``, in order."""
        return self.layouts[0].sizes if self.prunable else []

    def parameters(self) -> list[torch.Tensor]:
        """The leaves the optimizer updates: ``weights`` first, then the others with and without decay."""
        return list(self.leaves)

    def decays(self) -> list[bool]:
        """Per entry of :meth:`parameters`: whether weight decay applies to it (formulas §1.1)."""
        return list(self._decays)

    def _member_forward(self, params: dict, buffers: dict, x: torch.Tensor, member: int = 0) -> torch.Tensor:
        return functional_call(self.models[member], (params, buffers), (x,), tie_weights=self._ties)

    def set_training(self, mode: bool) -> None:
        """Put every member's model (all its modules) in training (True) or eval mode."""
        for model in self.models:
            model.train(mode)

    def named_leaves(self, leaves: Sequence[torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """Tensors aligned with :meth:`parameters` (such as momentum buffers) as ``[K, *shape]`` views by
        parameter name; None ones left out."""
        named: dict[str, torch.Tensor] = {}
        for layout, leaf in zip(self.layouts, leaves, strict=True):
            if leaf is not None:
                named.update(layout.views(leaf))
        return named

    def member_params(self, weights: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``[K, ...]`` parameters by name (the constants too), the prunable ones taken from ``[K, N]`` ``weights``."""
        return {**self.named_leaves([weights, *self.leaves[1:]] if self.prunable else self.leaves), **self.constants}

    def stack_leaves(self, rows: Sequence[Mapping[str, torch.Tensor]]) -> list[torch.Tensor | None]:
        """Inverse of :meth:`named_leaves`: one mapping per member to leaves aligned with :meth:`parameters`.

        A leaf is None where a member's mapping lacks one of its names.
        """
        return [
            None
            if any(name not in row for row in rows for name in layout.names)
            else layout.flatten([torch.stack([row[name] for row in rows]) for name in layout.names]).to(layout.device)
            for layout in self.layouts
        ]

    def grad_pieces(self) -> tuple[list[torch.Tensor], list[list[int]] | None]:
        """The ``[K, ...]`` gradient pieces whose per-member norms make each member's gradient norm, and each member's
        order of them for :meth:`PackedSGD.clip <tuneprune.training.optim.PackedSGD.clip>`: the leaves' gradients
        (None: in their order); on the NumPy path each parameter's, in ``clip_orders`` (bit for bit as alone)."""
        grads = [leaf.grad for leaf in self.leaves]
        if not on_numpy(*[g for g in grads if g is not None]):
            return [g for g in grads if g is not None], None
        named = self.named_leaves(grads)
        position = {name: i for i, name in enumerate(named)}
        return list(named.values()), [[position[n] for n in order if n in position] for order in self.clip_orders]

    def forward(self, weights: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        """``[K, B, classes]`` logits of every member on its own batch ``x[k]`` ([K, B, ...]), each batch in the
        members' memory format, each module in its mode (:meth:`set_training`)."""
        if self.forward_mode == "vmap":
            if self.memory_format == torch.channels_last:  # each x[k] a channels_last view
                x = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
            return self._vmapped(self.member_params(weights), self.buffers, x)
        return join_members(
            [
                self._member_forward({**params, **fixed}, buffers, x[k].contiguous(memory_format=self.memory_format), k)
                for k, (params, (fixed, buffers)) in enumerate(
                    zip(self._params_by_member(weights), self._fixed_rows, strict=True)
                )
            ]
        )

    def _params_by_member(self, weights: torch.Tensor | None) -> list[dict[str, torch.Tensor]]:
        """Each member's trained parameters by name, views of its row of each leaf (the prunable ones of ``weights``):
        one operator per parameter for one member, two whatever K for several (a ``[K, *shape]`` view unbound)."""
        leaves = self.leaves if weights is None else [weights, *self.leaves[1:]]
        members: list[dict[str, torch.Tensor]] = [{} for _ in range(len(self.models))]
        for layout, leaf in zip(self.layouts, leaves, strict=True):
            if len(leaf) == 1:
                members[0].update(layout.views(leaf.squeeze(0)))
                continue
            for name, stacked in layout.views(leaf).items():
                for params, row in zip(members, stacked.unbind(0), strict=True):
                    params[name] = row
        return members

    def keep(self, rows: Sequence[int]) -> None:
        """Go on with the members at ``rows`` only (their gradients kept)."""
        self.leaves = [take_members(leaf, rows) for leaf in self.leaves]
        self.buffers = {name: take_members(b, rows) for name, b in self.buffers.items()}
        self.constants = {name: take_members(c, rows) for name, c in self.constants.items()}
        self.models = take_members(self.models, rows)
        self.clip_orders = take_members(self.clip_orders, rows)
        self._bind_models()

    def _bind_models(self) -> None:
        """Make every member's model hold views of its rows of the stacked tensors: the weights are on the device
        once, not twice, and a model shows its member's current weights and buffers (to hooks, say); and so do the
        ``loop`` forward's constants and buffers of each member (it updates the buffers in place)."""
        stacked = {**self.named_leaves(self.leaves), **self.constants, **self.buffers}
        for k, model in enumerate(self.models):
            _assign(model, {name: t[k].detach() for name, t in stacked.items()})
        constants = {name: _members(c) for name, c in self.constants.items()}
        buffers = {name: _members(b) for name, b in self.buffers.items()}
        self._fixed_rows = [
            ({name: c[k] for name, c in constants.items()}, {name: b[k] for name, b in buffers.items()})
            for k in range(len(self.models))
        ]

    @torch.no_grad()
    def member_state(self, row: int, weights: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The ``state_dict`` of member ``row`` (copies, by parameter name), prunable weights from ``weights``."""
        return {name: t[row].detach().clone() for name, t in {**self.member_params(weights), **self.buffers}.items()}

    def export(self, row: int, weights: torch.Tensor | None, model: nn.Module) -> nn.Module:
        """Give ``model`` (member ``row``'s architecture) copies of the member's tensors, prunable weights from
        ``weights``: tensors of its own, no longer views of the pack's."""
        _assign(model, self.member_state(row, weights))
        return model


def _assign(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Make ``model``'s parameters and buffers (by name) hold ``tensors``, each keeping its identity (``.data``)."""
    parameters = dict(model.named_parameters())
    for name, tensor in tensors.items():
        (parameters[name] if name in parameters else model.get_buffer(name)).data = tensor
