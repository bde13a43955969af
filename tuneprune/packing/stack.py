"""K copies of one architecture as stacked tensors: ``[K, ...]`` parameters and buffers, one forward for all.

The prunable weights of every member form one ``[K, N]`` leaf (layers as consecutive
segments), so thresholds, masks and the optimizer treat all members and layers at once.
The forward runs each member's own weights and BatchNorm buffers on its own batch,
either under ``torch.vmap`` over ``torch.func.functional_call`` (fused: batched/grouped
kernels) or as a loop of ``functional_call`` over the members (``loop``), whichever is
faster on the device (``scripts/bench_pack.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn as nn
from torch.func import functional_call, stack_module_state

from tuneprune.training.optim import has_weight_decay

FORWARD_MODES = ("vmap", "loop")


class StackedModel:
    """Parameters and buffers of ``models`` (same architecture) stacked along a new first dimension.

    ``weights`` is the ``[K, N]`` leaf of the parameters named ``prunable`` (flattened, in
    that order); ``others`` maps every other parameter name to its ``[K, ...]`` leaf;
    ``buffers`` (BatchNorm statistics) are ``[K, ...]`` and updated in place by the forward.
    """

    def __init__(self, models: Sequence[nn.Module], prunable: Sequence[str], forward_mode: str = "loop") -> None:
        if forward_mode not in FORWARD_MODES:
            raise ValueError(f"forward_mode = {forward_mode!r}, allowed: {', '.join(FORWARD_MODES)}")
        params, self.buffers = stack_module_state(list(models))
        self.base = copy.deepcopy(models[0]).to("meta")
        self.prunable = list(prunable)
        self.shapes = [params[name].shape[1:] for name in self.prunable]
        self.sizes = [shape.numel() for shape in self.shapes]
        flat = [params.pop(name).detach().flatten(1) for name in self.prunable]
        self.weights = torch.cat(flat, dim=1).requires_grad_() if flat else None
        self.others: dict[str, torch.Tensor] = params
        self.forward_mode = forward_mode
        self._vmapped = torch.vmap(self._member_forward, in_dims=(0, 0, 0), randomness="error")

    def parameters(self) -> list[torch.Tensor]:
        """The leaves the optimizer updates: ``weights`` first, then ``others`` in order."""
        return ([self.weights] if self.weights is not None else []) + list(self.others.values())

    def decays(self) -> list[bool]:
        """Per entry of :meth:`parameters`: whether weight decay applies to it (formulas §1.1)."""
        return ([True] if self.weights is not None else []) + [
            has_weight_decay(self.base.get_parameter(name)) for name in self.others
        ]

    def _member_forward(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    def _by_name(self, weights: torch.Tensor | None, others: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``others`` and the prunable parameters' segments of ``[K, N]`` ``weights``, ``[K, *shape]`` by name."""
        params = dict(others)
        if weights is not None:
            k = weights.shape[0]
            for name, shape, segment in zip(self.prunable, self.shapes, weights.split(self.sizes, dim=1)):
                params[name] = segment.reshape(k, *shape)
        return params

    def member_params(self, weights: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``[K, ...]`` parameters by name, the prunable ones taken from ``[K, N]`` ``weights``."""
        return self._by_name(weights, self.others)

    def named_leaves(self, leaves: Sequence[torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """Tensors aligned with :meth:`parameters` (such as momentum buffers) by parameter name; None ones left out."""
        first = 1 if self.weights is not None else 0
        others = {name: leaf for name, leaf in zip(self.others, leaves[first:]) if leaf is not None}
        return self._by_name(leaves[0] if first else None, others)

    def stack_leaves(self, rows: Sequence[Mapping[str, torch.Tensor]]) -> list[torch.Tensor | None]:
        """Inverse of :meth:`named_leaves`: one mapping per member to leaves aligned with :meth:`parameters`.

        A leaf is None where a member's mapping lacks one of its names.
        """
        device = self.parameters()[0].device

        def stacked(
            names: Sequence[str], member: Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
        ) -> torch.Tensor | None:
            if any(name not in row for row in rows for name in names):
                return None
            return torch.stack([member(row) for row in rows]).to(device)

        leaves = []
        if self.weights is not None:
            leaves.append(stacked(self.prunable, lambda row: torch.cat([row[n].flatten() for n in self.prunable])))
        return leaves + [stacked([name], lambda row, name=name: row[name]) for name in self.others]

    def forward(self, weights: torch.Tensor | None, x: torch.Tensor, train: bool) -> torch.Tensor:
        """``[K, B, classes]`` logits of every member on its own batch ``x[k]`` ([K, B, ...])."""
        self.base.train(train)
        params = self.member_params(weights)
        if self.forward_mode == "vmap":
            return self._vmapped(params, self.buffers, x)
        rows = {name: t.unbind(0) for name, t in params.items()}
        buffer_rows = {name: t.unbind(0) for name, t in self.buffers.items()}
        return torch.stack(
            [
                self._member_forward(
                    {name: r[k] for name, r in rows.items()}, {name: r[k] for name, r in buffer_rows.items()}, x[k]
                )
                for k in range(len(x))
            ]
        )

    def keep(self, rows: Sequence[int]) -> None:
        """Go on with the members at ``rows`` only (their gradients kept)."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self.parameters()[0].device)

        def select(leaf: torch.Tensor) -> torch.Tensor:
            kept = leaf.detach().index_select(0, index).requires_grad_()
            if leaf.grad is not None:
                kept.grad = leaf.grad.index_select(0, index)
            return kept

        if self.weights is not None:
            self.weights = select(self.weights)
        self.others = {name: select(leaf) for name, leaf in self.others.items()}
        self.buffers = {name: b.index_select(0, index) for name, b in self.buffers.items()}

    @torch.no_grad()
    def member_state(self, row: int, weights: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The ``state_dict`` of member ``row`` (copies), prunable weights from ``weights``."""
        state = {name: t[row].detach().clone() for name, t in self.member_params(weights).items()}
        state.update({name: b[row].clone() for name, b in self.buffers.items()})
        return state

    def export(self, row: int, weights: torch.Tensor | None, model: nn.Module) -> nn.Module:
        """Load member ``row`` into ``model`` (its architecture), prunable weights from ``weights``."""
        model.load_state_dict(self.member_state(row, weights))
        return model
