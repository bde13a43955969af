"""Which implementation the per-iteration work of the sparse engine takes (formulas §1.4, §10.1, §10.6).

On CPU memory the NumPy path (reading a CPU value is no device sync); elsewhere the
accelerator path, which reads nothing back to the host: values that live on the device stay
0-dim tensors, branched on by :func:`select`. :func:`accelerator_path` routes CPU tensors to
the accelerator path, so that tests pin it and benchmarks count its operators on a machine
without one. :func:`single_threaded` keeps the engine's elementwise passes on one CPU thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

_NUMPY_DTYPES = (torch.bool, torch.float16, torch.float32, torch.float64)
_numpy_on_cpu = [True]

Number = float | torch.Tensor


def on_numpy(*tensors: torch.Tensor) -> bool:
    """Whether the NumPy path handles these tensors (CPU memory, a dtype NumPy has)."""
    return all(numpy_device(t.device) and t.dtype in _NUMPY_DTYPES for t in tensors)


def numpy_device(device: torch.device) -> bool:
    """Whether work on ``device`` takes the CPU's path: CPU memory, outside :func:`accelerator_path`."""
    return _numpy_on_cpu[-1] and device.type == "cpu"


@contextmanager
def accelerator_path() -> Iterator[None]:
    """Within this block CPU tensors take the accelerator path too."""
    _numpy_on_cpu.append(False)
    try:
        yield
    finally:
        _numpy_on_cpu.pop()


def select(condition: bool | torch.Tensor, if_true: Number, if_false: Number) -> Number:
    """``if_true`` where ``condition`` holds, else ``if_false``; a tensor condition by ``torch.where``, unread."""
    if isinstance(condition, torch.Tensor):
        return torch.where(condition, if_true, if_false)
    return if_true if condition else if_false


def device_scalar(value: Number, device: torch.device) -> torch.Tensor:
    """``value`` (a float, or a tensor of any shape) as float64 on ``device`` without waiting for the device: a
    float becomes a fill (the value travels as a kernel argument), a tensor a non-blocking copy."""
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=torch.float64, non_blocking=True)
    return torch.full((), value, dtype=torch.float64, device=device)


def device_vector(values: Sequence[Number], device: torch.device) -> torch.Tensor:
    """``values`` (floats or 0-dim tensors) as a ``[K]`` float64 tensor on ``device``, one :func:`device_scalar`
    each: a host list copied to an accelerator would wait for the device to drain first (formulas §10.6)."""
    return torch.stack([device_scalar(value, device) for value in values])


@contextmanager
def single_threaded(device: torch.device) -> Iterator[None]:
    """Run the block on one intra-op thread when ``device`` is the CPU; elsewhere change nothing.

    The masks, the thresholded weights, the gradient scaling and the SGD update are
    memory-bound passes, large enough for torch to split over its thread pool; on a CPU
    whose cores are busy each split waits for a core (measured on 2 busy cores: 3.6x
    slower than one thread). Convolutions keep all threads.
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
