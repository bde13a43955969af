"""A loader over in-memory tensors: shuffling and augmentation on whole batches (formulas §1.6)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch


def augment_batch(
    x: torch.Tensor, generator: torch.Generator, padding: int = 4, pad_value: torch.Tensor | Sequence[float] = (0.0,)
) -> torch.Tensor:
    """Random crop (``padding`` on each side holding ``pad_value``, one per channel or one for all; same size out)
    and horizontal flip, per image (formulas §1.6).

    ``pad_value`` is :attr:`tuneprune.data.splits.DatasetSplits.pad_value`, a pixel of 0 before
    normalisation, as torchvision's ``RandomCrop(padding=4)`` pads before ``Normalize`` (a tensor
    on ``x``'s device spares a copy from the host per batch). ``generator`` lives on ``x``'s device.
    """
    n, c, h, w = x.shape
    dev = x.device
    fill = torch.as_tensor(pad_value, dtype=x.dtype, device=dev).expand(c)
    padded = fill[None, :, None, None].repeat(n, 1, h + 2 * padding, w + 2 * padding)
    padded[:, :, padding : padding + h, padding : padding + w] = x
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    flip = torch.rand(n, generator=generator, device=dev) < 0.5
    rows = oy[:, None] + torch.arange(h, device=dev)[None, :]  # (n, h)
    cols = ox[:, None] + torch.arange(w, device=dev)[None, :]  # (n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    # a copy in NCHW strides: of one channel, .contiguous() would keep the permuted strides, which also read as
    # channels_last, and a convolution would take another kernel than on the same batch stacked in a pack
    return out.permute(0, 3, 1, 2).clone(memory_format=torch.contiguous_format)


@dataclass(eq=False)
class TensorLoader:
    """Iterate ``(x, y)`` batches of tensors already on their device.

    The permutation and the augmentation draw from a generator on the tensors' device
    seeded by ``(seed, epoch)``, so an epoch is the same whether or not training was
    resumed, and no random number crosses from the host.
    """

    x: torch.Tensor
    y: torch.Tensor
    batch_size: int
    shuffle: bool = False
    augment: bool = False
    seed: int = 0
    pad_value: torch.Tensor | Sequence[float] = (0.0,)
    epoch: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError("x and y must have the same length")
        self.pad_value = torch.as_tensor(self.pad_value, dtype=self.x.dtype, device=self.x.device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator(device=self.x.device).manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.x)
        order = torch.randperm(n, generator=g, device=self.x.device) if self.shuffle else None
        for i in range(len(self)):
            sl = slice(i * self.batch_size, min((i + 1) * self.batch_size, n))
            idx = sl if order is None else order[sl]
            xb, yb = self.x[idx], self.y[idx]
            if self.augment:
                xb = augment_batch(xb, g, pad_value=self.pad_value)
            yield xb, yb
