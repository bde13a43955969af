"""Several tensors as views of one flat buffer, so that per-iteration work is one pass (formulas §1.4)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from tuneprune.sparsity.segments import Segments


def storage_order(t: torch.Tensor) -> list[int]:
    """The dimensions of ``t`` from the outermost to the innermost in memory (e.g. channels_last).

    Of two dimensions with one stride, the longer is the outer one: a dimension of size 1
    (the one input channel of a first convolution) sits inside the one it shares its stride
    with, so that a view laid out in this order has ``t``'s strides exactly (the kernel a
    convolution picks depends on them).
    """
    strides, shape = t.stride(), t.shape
    return sorted(range(t.ndim), key=lambda d: (-strides[d], -shape[d], d))


def view_in_order(piece: torch.Tensor, shape: Sequence[int], order: Sequence[int], lead: int = 0) -> torch.Tensor:
    """``piece``, holding tensors of ``shape`` in the memory order ``order`` after ``lead`` leading dimensions, as
    those tensors (a view with their strides)."""
    leading = list(piece.shape[:lead])
    if list(order) == sorted(order):  # contiguous: one view
        return piece.view(*leading, *shape)
    stored = piece.view(*leading, *[shape[d] for d in order])
    return stored.permute(*range(lead), *[lead + list(order).index(d) for d in range(len(shape))])


class FlatLayout:
    """Where each of several same-dtype tensors lies in a flat row: consecutive segments, each holding its
    tensor's entries in that tensor's memory order (``orders``), so that a contiguous or a channels_last tensor
    keeps its strides as a view of its segment.

    A row is one model's tensors (``[M]``, the Sparsifier's buffer), or the last dimension of ``[K, M]``, whose
    K rows hold K members' tensors (a pack's leaves). ``names`` (optional) name the tensors for :meth:`views`.
    """

    def __init__(
        self,
        shapes: Sequence[Sequence[int]],
        orders: Sequence[Sequence[int]],
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        names: Sequence[str] = (),
    ) -> None:
        self.shapes = [torch.Size(shape) for shape in shapes]
        self.orders = [list(order) for order in orders]
        self.names = list(names)
        self.dtype, self.device = dtype, device
        self.sizes = [shape.numel() for shape in self.shapes]  # each tensor's segment length

    @classmethod
    def of(cls, tensors: Sequence[torch.Tensor]) -> FlatLayout:
        """The layout of ``tensors`` (one dtype, one device), each in its own memory order."""
        first = tensors[0]
        if any(t.dtype != first.dtype or t.device != first.device for t in tensors):
            raise ValueError("all tensors of a flat layout must share one dtype and one device")
        return cls([t.shape for t in tensors], [storage_order(t) for t in tensors], first.device, first.dtype)

    @functools.cached_property
    def segments(self) -> Segments:
        """The segments with their per-entry ids on the device, for one-pass reductions over them (made when first
        asked: a pack's leaves never need them)."""
        return Segments(self.sizes, self.device)

    def shaped(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of ``flat`` (``[M]`` or ``[K, M]``, any dtype) with each tensor's shape and strides (after K)."""
        lead = flat.ndim - 1
        return [
            view_in_order(piece, shape, order, lead)
            for piece, shape, order in zip(flat.split(self.sizes, dim=-1), self.shapes, self.orders, strict=True)
        ]

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`shaped` by name."""
        return dict(zip(self.names, self.shaped(flat), strict=True))

    def flatten(self, stacked: Sequence[torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`shaped` for ``[K, ...]`` tensors: ``[K, M]``, row k their k-th tensors in their memory order."""
        pieces = [
            t.permute(0, *[d + 1 for d in order]).flatten(1) for t, order in zip(stacked, self.orders, strict=True)
        ]
        return torch.cat(pieces, dim=1)


@torch.no_grad()
def flatten_parameters(parameters: Sequence[torch.nn.Parameter]) -> tuple[FlatLayout, torch.Tensor]:
    """Move ``parameters`` into one flat buffer; each keeps its identity and becomes a view of it.

    Returns the layout and the buffer. The optimizer and the state_dict see the same
    parameters as before; in-place updates of a parameter write into the buffer.
    """
    layout = FlatLayout.of(parameters)
    flat = torch.empty(sum(layout.sizes), dtype=layout.dtype, device=layout.device)
    for parameter, view in zip(parameters, layout.shaped(flat), strict=True):
        view.copy_(parameter)
        parameter.data = view
    return layout, flat
