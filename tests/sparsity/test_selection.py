"""The accelerator selection (one sort of all segments by an int64 key), pinned on the CPU to torch.quantile (formulas §1.4)."""

import pytest
import torch

from tuneprune.sparsity.segments import Segments
from tuneprune.sparsity.thresholds import magnitude_quantiles, segmented_quantiles

QS = [0.0, 1e-4, 0.1, 0.5, 0.9, 0.95, 0.999, 1.0]


def _partition(values: torch.Tensor, q: float) -> torch.Tensor:
    """The CPU partition path (numpy quickselect), the engine's pinned CPU reference."""
    return magnitude_quantiles(values, [q])[0]


def _check(values: torch.Tensor, sizes: list[int], q: float) -> None:
    found = segmented_quantiles(values, Segments(sizes, values.device), q)
    for part, threshold in zip(values.split(sizes), found, strict=True):
        expected = torch.quantile(part.double(), q).float() if q > 0 else torch.zeros(())
        torch.testing.assert_close(threshold, expected, rtol=1e-6, atol=0)
        assert torch.equal(threshold, _partition(part, q))  # bitwise the CPU path's value
        assert int((part <= threshold).sum()) == int((part <= _partition(part, q)).sum())  # exact zero counts


@pytest.mark.parametrize("seed", range(3))
def test_one_segment_of_random_size_equals_torch_quantile(seed):
    g = torch.Generator().manual_seed(seed)
    for n in [
        1,
        2,
        3,
        int(torch.randint(4, 1000, (1,), generator=g)),
        int(torch.randint(1000, 10**6, (1,), generator=g)),
    ]:
        values = torch.randn(n, generator=g).abs() * 10 ** float(torch.randint(-4, 2, (1,), generator=g))
        for q in QS:
            _check(values, [n], q)


def test_a_million_values_global():
    values = torch.rand(10**6, generator=torch.Generator().manual_seed(7)) * 0.05
    for q in (0.5, 0.9, 0.98):
        _check(values, [10**6], q)


@pytest.mark.parametrize("seed", range(3))
def test_all_layers_in_one_batched_selection(seed):
    g = torch.Generator().manual_seed(seed)
    sizes = [1, 2, 7, *torch.randint(1, 30_000, (6,), generator=g).tolist()]
    values = torch.cat([torch.randn(n, generator=g).abs() * (i + 1) for i, n in enumerate(sizes)])
    for q in QS:
        _check(values, sizes, q)


def test_a_quantile_per_layer_as_a_tensor():
    g = torch.Generator().manual_seed(3)
    sizes = [50, 1, 999, 4096]
    values = torch.rand(sum(sizes), generator=g)
    qs = torch.tensor([0.25, 0.7, 0.0, 0.999], dtype=torch.float64)
    found = segmented_quantiles(values, Segments(sizes, "cpu"), qs)
    for part, q, threshold in zip(values.split(sizes), qs.tolist(), found, strict=True):
        assert torch.equal(threshold, _partition(part, q))


@pytest.mark.parametrize("sizes", [[1000], [10, 300, 1, 4000]])
def test_ties_and_all_equal_values(sizes):
    g = torch.Generator().manual_seed(11)
    ties = torch.randint(0, 4, (sum(sizes),), generator=g).float() * 0.125  # four distinct magnitudes, 0 included
    equal = torch.full((sum(sizes),), 0.3)
    zeros = torch.zeros(sum(sizes))
    for values in (ties, equal, zeros):
        for q in QS:
            _check(values, sizes, q)


def test_float64_and_bfloat16_inputs():
    g = torch.Generator().manual_seed(5)
    doubles = torch.rand(5000, generator=g, dtype=torch.float64)
    found = segmented_quantiles(doubles, Segments([2000, 3000], "cpu"), 0.9)
    for part, threshold in zip(doubles.split([2000, 3000]), found, strict=True):
        assert threshold.dtype == torch.float64
        torch.testing.assert_close(threshold, torch.quantile(part, 0.9), rtol=1e-12, atol=0)
    halves = torch.rand(999, generator=g).to(torch.bfloat16)
    found = segmented_quantiles(halves, Segments([999], "cpu"), 0.8)[0]
    torch.testing.assert_close(found, torch.quantile(halves.double(), 0.8).to(torch.bfloat16))
