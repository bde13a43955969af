"""The one way a pack's per-member state goes on with some of its members (formulas §10.7).

The stacked model, the sparse engine's state and mask builder and the optimizer drop members
(between epochs: a failed, finished or stopped member) through :func:`take_members` alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar, overload

import torch

Entry = TypeVar("Entry")


@overload
def take_members(value: torch.Tensor, rows: Sequence[int]) -> torch.Tensor: ...
@overload
def take_members(value: list[Entry], rows: Sequence[int]) -> list[Entry]: ...
@overload
def take_members(value: None, rows: Sequence[int]) -> None: ...


def take_members(value: torch.Tensor | list[Entry] | None, rows: Sequence[int]) -> torch.Tensor | list[Entry] | None:
    """The members at ``rows`` (positions, in that order) of a per-member ``value``; None stays None.

    A list gives its entries at ``rows``. A tensor ``[K, ...]`` gives a new tensor of its
    rows (``index_select``, one copy on its device); a leaf that requires a gradient stays
    one, its gradient's rows kept with it (an optimizer step may follow).
    """
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        return [value[i] for i in rows]
    index = torch.tensor(list(rows), dtype=torch.long, device=value.device)
    kept = value.detach().index_select(0, index)
    if value.is_leaf and value.requires_grad:
        kept.requires_grad_()
        if value.grad is not None:
            kept.grad = value.grad.index_select(0, index)
    return kept
