"""Named ``[K, *shape]`` tensors of K members as consecutive segments of the rows of one ``[K, M]`` tensor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from tuneprune.sparsity.flat import view_in_order


class PackedRowLayout:
    """Where each of ``names`` (a member's tensor of shape ``shapes[i]``) lies in a row: segments in that order.

    A segment holds its tensor in the memory order ``orders[i]`` (by default row-major), as
    :class:`~tuneprune.sparsity.flat.FlatLayout` does for one model, so that a member's
    channels_last weight is a view with the strides it has alone.
    """

    def __init__(
        self, names: Sequence[str], shapes: Sequence[torch.Size], orders: Sequence[Sequence[int]] | None = None
    ) -> None:
        self.names = list(names)
        self.shapes = [torch.Size(shape) for shape in shapes]
        self.sizes = [shape.numel() for shape in self.shapes]
        self.orders = [list(o) for o in orders] if orders is not None else [list(range(len(s))) for s in self.shapes]

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[K, M]``: row k the tensors ``tensors[name][k]`` flattened in their memory order, one after the other."""
        pieces = [
            tensors[name].permute(0, *[d + 1 for d in order]).flatten(1)
            for name, order in zip(self.names, self.orders, strict=True)
        ]
        return torch.cat(pieces, dim=1)

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inverse of :meth:`flatten`: each name's ``[K, *shape]`` view of its segment of ``flat`` (no copy)."""
        segments = flat.split(self.sizes, dim=1)
        return {
            name: view_in_order(segment, shape, order, lead=1)
            for name, shape, order, segment in zip(self.names, self.shapes, self.orders, segments, strict=True)
        }
