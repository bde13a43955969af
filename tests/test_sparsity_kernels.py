"""The mask-update kernels: numpy on CPU memory and torch elsewhere give the same results."""

import torch

from tuneprune.sparsity.kernels import abs_into, and_into, copy_into, greater_into, less_into, on_numpy, segment_counts


def _both_paths(values: torch.Tensor) -> list[torch.Tensor]:
    """float32 goes through numpy, bfloat16 (which numpy lacks) through torch."""
    return [values.float(), values.to(torch.bfloat16)]


def test_dispatch():
    assert on_numpy(torch.zeros(2), torch.zeros(2, dtype=torch.bool))
    assert not on_numpy(torch.zeros(2, dtype=torch.bfloat16))


def test_kernels_agree_on_both_paths():
    g = torch.Generator().manual_seed(0)
    weights = torch.randn(4, 5, generator=g).to(torch.bfloat16)  # exactly representable in both dtypes
    results = []
    for w in _both_paths(weights):
        magnitudes = torch.empty(20, dtype=w.dtype)
        abs_into(w.requires_grad_(), magnitudes)
        copied = torch.empty_like(magnitudes)
        copy_into(magnitudes, copied)
        kept, small, both = (torch.empty(20, dtype=torch.bool) for _ in range(3))
        greater_into(copied, torch.tensor(0.5, dtype=w.dtype), kept)
        less_into(copied, torch.tensor(0.2, dtype=w.dtype), small)
        and_into(kept, ~small, both)
        results.append((magnitudes.float(), kept, small, both, segment_counts(kept, [3, 7, 10])))
    (m_np, *masks_np), (m_torch, *masks_torch) = results
    assert torch.equal(m_np, weights.float().abs().flatten()) and torch.equal(m_np, m_torch)
    for a, b in zip(masks_np, masks_torch):
        assert torch.equal(a, b)
    kept = masks_np[0]
    assert masks_np[3].tolist() == [kept[:3].sum().item(), kept[3:10].sum().item(), kept[10:].sum().item()]
