"""Named ``[K, *shape]`` tensors of K members as consecutive segments of the rows of one ``[K, M]`` tensor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


class PackedRowLayout:
    """Where each of ``names`` (a member's tensor of shape ``shapes[i]``) lies in a row: segments in that order."""

    def __init__(self, names: Sequence[str], shapes: Sequence[torch.Size]) -> None:
        self.names = list(names)
        self.shapes = [torch.Size(shape) for shape in shapes]
        self.sizes = [shape.numel() for shape in self.shapes]

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[K, M]``: row k the tensors ``tensors[name][k]`` flattened, one after the other."""
        return torch.cat([tensors[name].flatten(1) for name in self.names], dim=1)

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inverse of :meth:`flatten`: each name's ``[K, *shape]`` view of its segment of ``flat`` (no copy)."""
        k = flat.shape[0]
        segments = flat.split(self.sizes, dim=1)
        return {
            name: segment.reshape(k, *shape)
            for name, shape, segment in zip(self.names, self.shapes, segments, strict=True)
        }
