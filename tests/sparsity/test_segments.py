"""Per-layer segments of the flat buffers: counts, spreading, and the CPU and accelerator compare paths."""

import pytest
import torch

from tuneprune.sparsity.flat import FlatLayout, flatten_parameters
from tuneprune.sparsity.segments import Segments, compare_into


def test_counts_by_numpy_and_by_one_running_sum_agree():
    g = torch.Generator().manual_seed(0)
    sizes = [1, 7, 300, 2, 4096]
    segments = Segments(sizes, "cpu")
    mask = torch.rand(sum(sizes), generator=g) > 0.4
    expected = torch.tensor([int(part.sum()) for part in mask.split(sizes)])
    assert torch.equal(segments.counts(mask), expected)
    assert torch.equal(segments.reduced_counts(mask), expected)
    assert torch.equal(Segments([50], "cpu").reduced_counts(mask[:50]), mask[:50].sum().unsqueeze(0))
    assert torch.equal(segments.spread(torch.arange(5)), torch.repeat_interleave(torch.arange(5), torch.tensor(sizes)))


def test_compare_paths_agree_per_layer_and_network_wide():
    g = torch.Generator().manual_seed(1)
    sizes = [10, 33, 64]
    segments = Segments(sizes, "cpu")
    values = torch.rand(sum(sizes), generator=g).to(torch.bfloat16)  # exactly representable in both dtypes
    for thresholds in (torch.tensor(0.5), torch.tensor([0.2, 0.5, 0.9])):
        for op in ("gt", "lt"):
            numpy_out, torch_out = (torch.empty(sum(sizes), dtype=torch.bool) for _ in range(2))
            compare_into(op, values.float(), thresholds.float(), segments, numpy_out)  # numpy path
            compare_into(op, values, thresholds.to(torch.bfloat16), segments, torch_out)  # torch path
            per_layer = thresholds.expand(3) if thresholds.dim() == 0 else thresholds
            expected = torch.cat(
                [getattr(part.float(), op)(t) for part, t in zip(values.split(sizes), per_layer, strict=True)]
            )
            assert torch.equal(numpy_out, expected)
            assert torch.equal(torch_out, expected)


def test_flattened_parameters_keep_identity_values_and_channels_last():
    conv = torch.nn.Parameter(torch.randn(4, 3, 3, 3).contiguous(memory_format=torch.channels_last))
    linear = torch.nn.Parameter(torch.randn(5, 2))
    before = [conv.detach().clone(), linear.detach().clone()]
    layout, flat = flatten_parameters([conv, linear])
    assert isinstance(layout, FlatLayout)
    assert flat.numel() == 4 * 27 + 10
    assert torch.equal(conv, before[0])
    assert torch.equal(linear, before[1])
    assert conv.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        linear.add_(1.0)  # an in-place update of a parameter writes into the buffer
    assert torch.equal(flat[-10:].view(5, 2), before[1] + 1.0)
    assert torch.equal(layout.shaped(flat.abs())[0], before[0].abs())


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shape", [(4, 3, 3, 3), (4, 1, 3, 3), (1, 3, 1, 1), (6, 1, 1, 1)])
def test_flattened_parameters_keep_their_exact_strides(shape, memory_format):
    """Even where a dimension of size 1 makes the format ambiguous: a convolution picks its kernel by the strides."""
    conv = torch.nn.Parameter(torch.randn(shape).contiguous(memory_format=memory_format))
    strides = conv.stride()
    flatten_parameters([conv, torch.nn.Parameter(torch.randn(3))])
    assert conv.stride() == strides
