"""Global and layer-wise magnitude thresholds (formulas §1.4): torch.quantile values without a sort (CPU partition path)."""

import pytest
import torch

from tuneprune.sparsity import global_threshold, layer_thresholds, magnitude_quantiles
from tuneprune.sparsity.segments import Segments
from tuneprune.sparsity.thresholds import FlatMagnitudes


def _layers(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(16, 3, 3, 3), (32, 16, 3, 3), (10, 32), (7,)]
    return [torch.randn(shape, generator=g) * (i + 1) for i, shape in enumerate(shapes)]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.9, 0.95, 0.999, 1.0])
def test_global_threshold_equals_torch_quantile(seed, sparsity):
    layers = _layers(seed)
    magnitudes = torch.cat([t.flatten().abs() for t in layers])
    expected = torch.quantile(magnitudes.double(), sparsity).float()
    torch.testing.assert_close(global_threshold(layers, sparsity), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("sparsity", [0.3, 0.9, 0.98])
def test_layer_thresholds_equal_torch_quantile_per_layer(sparsity):
    layers = _layers(7)
    for t, threshold in zip(layers, layer_thresholds(layers, sparsity), strict=True):
        torch.testing.assert_close(
            threshold, torch.quantile(t.flatten().abs().double(), sparsity).float(), rtol=1e-6, atol=0
        )


def test_zero_sparsity_gives_zero_threshold():
    layers = _layers(1)
    assert global_threshold(layers, 0.0).item() == 0.0
    assert all(t.item() == 0.0 for t in layer_thresholds(layers, 0.0))


@pytest.mark.parametrize("sparsity", [0.37, 0.9, 0.95, 0.99])
def test_achieved_sparsity_within_one_weight_of_target(sparsity):
    layers = _layers(3)
    n = sum(t.numel() for t in layers)
    pruned = sum(int((t.abs() <= global_threshold(layers, sparsity)).sum()) for t in layers)
    assert abs(pruned - sparsity * n) <= 1
    for t, threshold in zip(layers, layer_thresholds(layers, sparsity), strict=True):
        assert abs(int((t.abs() <= threshold).sum()) - sparsity * t.numel()) <= 1


def test_several_quantiles_in_one_selection_and_input_untouched():
    values = torch.rand(10_001, generator=torch.Generator().manual_seed(4))
    original = values.clone()
    qs = [0.0, 0.05, 0.5, 0.95, 0.95, 0.3]
    found = magnitude_quantiles(values, qs)
    assert torch.equal(values, original)
    assert found[0].item() == 0.0
    for q, value in zip(qs[1:], found[1:], strict=True):
        torch.testing.assert_close(value, torch.quantile(values.double(), q).float(), rtol=1e-6, atol=0)


def test_accelerator_path_for_dtypes_numpy_cannot_partition():
    values = torch.rand(999, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)
    expected = torch.quantile(values.double(), 0.8).to(torch.bfloat16)
    torch.testing.assert_close(magnitude_quantiles(values, [0.8])[0], expected)


def test_flat_magnitudes_reuse_buffers_and_match_the_functions():
    layers = _layers(2)
    flat = FlatMagnitudes(Segments([t.numel() for t in layers], "cpu"), torch.float32)
    weights = torch.cat([t.flatten() for t in layers])
    buffer = flat.flat.data_ptr()
    for _ in range(2):
        flat.gather(weights)
        whole = Segments([weights.numel()], "cpu")
        torch.testing.assert_close(flat.layer_quantiles(0.9, whole)[0], global_threshold(layers, 0.9))
        torch.testing.assert_close(flat.layer_quantiles(0.6), torch.stack(layer_thresholds(layers, 0.6)))
    per_layer = torch.tensor([0.1, 0.5, 0.9, 0.0], dtype=torch.float64)
    expected = [
        q.item() and torch.quantile(t.flatten().abs(), q.item()).item() for t, q in zip(layers, per_layer, strict=True)
    ]
    torch.testing.assert_close(flat.layer_quantiles(per_layer), torch.tensor(expected))
    assert flat.flat.data_ptr() == buffer
    torch.testing.assert_close(flat.flat, weights.abs())
