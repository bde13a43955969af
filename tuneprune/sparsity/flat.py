"""Several tensors as views of one flat buffer, so that per-iteration work is one pass (formulas §1.4)."""

from __future__ import annotations

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
    """Where each of several same-dtype tensors lives in one flat buffer, in its own memory layout.

    A tensor's segment holds its entries in its memory order, so that a contiguous or a
    channels_last weight keeps its layout when it becomes a view of the buffer.
    """

    def __init__(self, tensors: Sequence[torch.Tensor]) -> None:
        first = tensors[0]
        if any(t.dtype != first.dtype or t.device != first.device for t in tensors):
            raise ValueError("all prunable weights must share one dtype and one device")
        self.dtype, self.device = first.dtype, first.device
        self.shapes = [t.shape for t in tensors]
        self.orders = [storage_order(t) for t in tensors]
        self.segments = Segments([t.numel() for t in tensors], first.device)

    def shaped(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of ``flat`` (this layout's size, any dtype) with each tensor's shape and strides."""
        return [
            view_in_order(piece, shape, order)
            for piece, shape, order in zip(self.segments.split(flat), self.shapes, self.orders, strict=True)
        ]

    def empty(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.empty(self.segments.total, dtype=dtype or self.dtype, device=self.device)


@torch.no_grad()
def flatten_parameters(parameters: Sequence[torch.nn.Parameter]) -> tuple[FlatLayout, torch.Tensor]:
    """Move ``parameters`` into one flat buffer; each keeps its identity and becomes a view of it.

    Returns the layout and the buffer. The optimizer and the state_dict see the same
    parameters as before; in-place updates of a parameter write into the buffer.
    """
    layout = FlatLayout(parameters)
    flat = layout.empty()
    for parameter, view in zip(parameters, layout.shaped(flat), strict=True):
        view.copy_(parameter)
        parameter.data = view
    return layout, flat
