"""Dropping members: take_members keeps the members at the given positions of any per-member state."""

import torch

from tuneprune.sparsity.rows import take_members


def test_lists_keep_their_entries_in_the_given_order_and_none_stays_none():
    assert take_members(["a", "b", "c", "d"], [3, 1]) == ["d", "b"]
    assert take_members([1.0, 2.0], []) == []
    assert take_members(None, [0]) is None


def test_a_leaf_keeps_its_rows_its_gradients_rows_and_stays_a_leaf_that_requires_grad():
    leaf = torch.arange(12.0).view(4, 3).requires_grad_()
    leaf.grad = -leaf.detach().clone()
    kept = take_members(leaf, [2, 0])
    assert kept.is_leaf
    assert kept.requires_grad
    assert torch.equal(kept.detach(), torch.tensor([[6.0, 7.0, 8.0], [0.0, 1.0, 2.0]]))
    assert kept.grad is not None
    assert torch.equal(kept.grad, -kept.detach())
    kept.detach().zero_()
    assert leaf[2, 0] == 6.0  # a copy: the old leaf is untouched


def test_state_without_gradient_keeps_its_rows_and_dtype():
    buffer = torch.tensor([[True, False], [False, False], [True, True]])
    kept = take_members(buffer, [2])
    assert kept.dtype == torch.bool
    assert not kept.requires_grad
    assert torch.equal(kept, torch.tensor([[True, True]]))
    summed = torch.ones(3, requires_grad=True) * 2  # not a leaf: taken as a value
    assert not take_members(summed, [0, 1]).requires_grad
