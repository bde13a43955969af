"""SGD with momentum for K members at once: each its own learning rate, schedule, decay and clipping (formulas §1.6).

The update is torch's SGD (``torch.optim.SGD``, dampening 0) applied to the flat ``[K, M]``
leaves of :class:`~tuneprune.training.stack.StackedModel` (three at most, whatever the
depth: a step is a handful of operations), each member (row) with its own hyperparameters:

    g <- g * min(1, c / (||g||_member + 1e-6))          (gradient-norm clipping at c)
    d = g + wd * w   (weights with decay only),   b <- momentum * b + d   (b = d at the first step)
    w <- w - lr_k * (d + momentum * b  if nesterov_k  else  b)

with ``lr_k = lr * factor(k)`` of the member's learning-rate schedule and ``||g||_member``
the norm of the norms of the pieces of the member's gradient. The arithmetic is
elementwise, so the layout does not change it: on the CPU a member's step is exactly its
step alone (a value all members share applied by torch's own fused operation, differing
ones row by row, :func:`_add_scaled`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch

from tuneprune.sparsity.dispatch import device_vector, numpy_device, on_numpy
from tuneprune.sparsity.rows import take_members
from tuneprune.training.config import RunConfig


def has_weight_decay(parameter: torch.Tensor) -> bool:
    """Weight matrices and kernels decay; BatchNorm parameters and biases (1-D) never do (formulas §1.1)."""
    return parameter.ndim > 1


def lr_factor(kind: str, total_steps: int) -> Callable[[int], float]:
    """The learning rate at step k as a fraction of the initial one: cosine
    ``0.5 * (1 + cos(pi * min(k, total) / total))`` (formulas §1.6), constant 1."""
    if kind == "constant":
        return lambda step: 1.0
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


class PerMember:
    """One value per member: the floats, and (made when first needed) a ``[K]`` float64 tensor on ``device`` made
    of fills, :func:`~tuneprune.sparsity.dispatch.device_vector` (formulas §10.6)."""

    def __init__(self, values: Sequence[float], device: torch.device) -> None:
        self.values = [float(v) for v in values]
        self.device = device

    @functools.cached_property
    def tensor(self) -> torch.Tensor:
        return device_vector(self.values, self.device)

    @property
    def shared(self) -> bool:
        """Whether every member has the same value."""
        return len(set(self.values)) == 1

    def column(self, like: torch.Tensor) -> torch.Tensor:
        """The values as a ``[K, 1, ...]`` tensor in ``like``'s dtype that broadcasts against ``like``."""
        return self.tensor.to(like.dtype).view(-1, *[1] * (like.ndim - 1))


def _add_scaled(y: torch.Tensor, x: torch.Tensor, alphas: PerMember, inplace: bool = False) -> torch.Tensor:
    """``y + alpha_k * x`` for each member k (row k of ``y`` and ``x``): on the accelerator path with differing
    alphas one broadcast product (rounding may differ in the last bit), else each member's SGD arithmetic alone."""
    if alphas.shared:
        alpha = alphas.values[0]
        return y.add_(x, alpha=alpha) if inplace else y.add(x, alpha=alpha)
    out = y if inplace else y.clone()
    if numpy_device(y.device):
        for row, x_row, alpha in zip(out, x, alphas.values, strict=True):
            row.add_(x_row, alpha=alpha)
        return out
    return out.addcmul_(alphas.column(x), x)


class PackedSGD:
    """Optimizer state of K members over ``[K, M]`` leaves on ``device``; ``decays[i]``: whether leaf i decays."""

    def __init__(
        self, configs: Sequence[RunConfig], decays: Sequence[bool], total_steps: int, device: torch.device
    ) -> None:
        self.device, self.total_steps = device, total_steps
        self.decays = list(decays)
        self.momentum_buffers: list[torch.Tensor | None] = [None] * len(self.decays)
        self._set_members(configs)

    def _set_members(self, configs: Sequence[RunConfig]) -> None:
        self.configs = list(configs)
        self.factors = [lr_factor(c.lr_schedule, self.total_steps) for c in configs]
        self.momenta = PerMember([c.momentum for c in configs], self.device)
        self.weight_decays = PerMember([c.weight_decay for c in configs], self.device)
        self.clips = PerMember([c.grad_clip or float("inf") for c in configs], self.device)
        self.nesterov = [c.nesterov for c in configs]
        # where the members differ, a [K, 1] bool tensor on the device (made here, not in a step)
        self._nesterov_rows = (
            None if len(set(self.nesterov)) <= 1 else torch.tensor(self.nesterov, device=self.device)[:, None]
        )

    def lr_at(self, step: int) -> list[float]:
        """Each member's learning rate at optimizer step ``step`` (what its LambdaLR would give)."""
        return [c.lr * factor(step) for c, factor in zip(self.configs, self.factors, strict=True)]

    @property
    def clipping(self) -> bool:
        """Whether some member clips its gradients."""
        return any(math.isfinite(c) for c in self.clips.values)

    @torch.no_grad()
    def clip(
        self,
        params: Sequence[torch.Tensor],
        pieces: Sequence[torch.Tensor],
        orders: Sequence[Sequence[int]] | None = None,
    ) -> None:
        """Clip member k's gradient (row k of the ``[K, M]`` leaves ``params``) at its ``grad_clip`` c (formulas §1.6):
        ``g <- g * min(1, c / (||g|| + 1e-6))``, ``||g|| = ||(||x_1[k]||, ..., ||x_m[k]||)||`` over the ``[K, ...]``
        gradient ``pieces`` in its order ``orders[k]`` (None: theirs), both from
        :meth:`~tuneprune.training.stack.StackedModel.grad_pieces`: on the NumPy path as ``clip_grad_norm_`` alone
        (bit for bit), elsewhere for all members at once (rounding may differ in the last bit)."""
        if on_numpy(*pieces):
            members = range(len(self.clips.values))
            in_order = orders if orders is not None else [range(len(pieces)) for _ in members]
            totals = [
                torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(pieces[i][k]) for i in in_order[k]]))
                for k in members
            ]
            total = torch.stack(totals)
        else:
            norms = torch.stack([torch.linalg.vector_norm(x.flatten(1), dim=1) for x in pieces], dim=1)
            total = torch.linalg.vector_norm(norms, dim=1)
        coefficient = ((total + 1e-6).reciprocal() * self.clips.column(total)).clamp(max=1.0).unsqueeze(1)
        for p in params:
            if p.grad is not None:
                p.grad.mul_(coefficient)

    @torch.no_grad()
    def step(self, params: Sequence[torch.Tensor], step: int) -> None:
        """One SGD step of every member at its learning rate for ``step``."""
        lrs = PerMember([-lr for lr in self.lr_at(step)], self.device)
        for i, (p, decay) in enumerate(zip(params, self.decays, strict=True)):
            if p.grad is None:
                continue
            d = _add_scaled(p.grad, p, self.weight_decays) if decay else p.grad
            buffer = self.momentum_buffers[i]
            if buffer is None:
                buffer = self.momentum_buffers[i] = d.clone()
            else:
                buffer.mul_(self.momenta.values[0] if self.momenta.shared else self.momenta.column(buffer)).add_(d)
            update = buffer
            if any(self.nesterov):  # a member's own choice: d + momentum * b with Nesterov, b without
                ahead = _add_scaled(d, buffer, self.momenta)
                update = ahead if self._nesterov_rows is None else torch.where(self._nesterov_rows, ahead, buffer)
            _add_scaled(p, update, lrs, inplace=True)

    def keep(self, rows: Sequence[int]) -> None:
        """Go on with the members at ``rows`` only."""
        self._set_members(take_members(self.configs, rows))
        self.momentum_buffers = [take_members(b, rows) for b in self.momentum_buffers]
