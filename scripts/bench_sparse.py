"""Benchmark of the sparse training engine: step time dense vs sparse, threshold vs a full sort.

    python scripts/bench_sparse.py [--models resnet20,densenet40_24] [--steps 6] [--warmup 1] [--threads N]
                                   [--sparse-config '{threshold: layer}'] [--json PATH]

For each model (CIFAR-shaped random batch, batch 128) and device (the CPU, and CUDA when
present) it prints, measured in this run: the median time of one training step (forward,
backward, SGD step) dense and sparse (Feather defaults at a constant sparsity, the
Sparsifier's ``before_iteration`` included), their ratio and the ratio of the fastest
steps (``best``, robust to other load on the machine); and the threshold update
(gather |w| + selection, formulas §1.4) against the full-sort baseline of the Feather
reference (``torch.cat`` + ``torch.sort`` + interpolation) and ``torch.quantile``, the
accelerator selection (one sort of all layers, timed on every device), plus the whole
per-iteration mask update (threshold, masks, theta, stability). Dense and
sparse steps are interleaved so that load on the machine affects both alike.

``launches`` counts, with ``torch.profiler``, what one step issues: on CUDA the device
kernels, on the CPU the top-level ``aten::`` operators (each at most one kernel launch on
an accelerator, views none); for the dense step, the sparse step and the mask update
alone, and again along the accelerator path (sorted selection, running-sum counts; on the
CPU its NumPy work is invisible to the profiler). These counts hold on any device,
unlike the times.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from typing import Annotated, Any

import torch
import yaml
from bench_arguments import positive_int, whole_number
from bench_common import (
    NUM_CLASSES,
    FigureFile,
    SoloStep,
    add_json_argument,
    add_machine_arguments,
    bench_each,
    launches,
    model_names,
    start,
    sync,
)
from pydantic import TypeAdapter, ValidationError

from tuneprune.shared.config import ConfigError, format_validation_error, validate
from tuneprune.sparsity import SparsityConfig, original_weight
from tuneprune.sparsity.dispatch import accelerator_path
from tuneprune.sparsity.segments import Segments
from tuneprune.sparsity.thresholds import FlatMagnitudes, segmented_quantiles


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def _median_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    return 1000 * statistics.median(_timed(fn, device) for _ in range(repeats))


def _sort_threshold(weights: list[torch.Tensor], sparsity: float) -> torch.Tensor:
    """The Feather reference: concatenate, sort everything, interpolate."""
    values = torch.sort(torch.cat([w.detach().reshape(-1).abs() for w in weights])).values
    pos = sparsity * (values.numel() - 1)
    lower = int(pos)
    return torch.lerp(values[lower], values[min(lower + 1, values.numel() - 1)], pos - lower)


def _quantile_threshold(weights: list[torch.Tensor], sparsity: float) -> torch.Tensor:
    return torch.quantile(torch.cat([w.detach().reshape(-1).abs() for w in weights]), sparsity)


# ``--sparsity``: the sparse run's target, checked by the field ``target`` itself (errors name the option).
TARGET = TypeAdapter(Annotated[float, SparsityConfig.model_fields["target"]])


def sparsity_config(sparsity: float, more: str) -> SparsityConfig:
    """The sparse run's settings: constant ``--sparsity`` and the YAML flow of ``--sparse-config`` (a one-line
    :class:`ConfigError` naming the option or the field otherwise)."""
    try:
        TARGET.validate_python(sparsity)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, "--sparsity")) from None
    try:
        settings = yaml.safe_load(more)
    except yaml.YAMLError:
        settings = None
    if not isinstance(settings, dict):
        raise ConfigError(f"--sparse-config = {more!r}: a YAML mapping is required, e.g. '{{threshold: layer}}'")
    return validate(SparsityConfig, {"target": sparsity, "scheduler": {"type": "constant"}, **settings})


def bench(name: str, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    x = torch.randn(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, NUM_CLASSES, (args.batch_size,), device=device)
    dense, sparse = SoloStep(name, device, None), SoloStep(name, device, args.config)
    for _ in range(args.warmup):
        dense.step(x, y)
        sparse.step(x, y)
    dense_times, sparse_times = [], []
    for _ in range(args.steps):
        dense_times.append(_timed(lambda: dense.step(x, y), device))
        sparse_times.append(_timed(lambda: sparse.step(x, y), device))
    if not args.steps:  # thresholds only
        dense_times = sparse_times = [math.nan]

    sparsifier = sparse.sparsifier
    assert sparsifier is not None  # built with a sparsity config
    weights: list[torch.Tensor] = [original_weight(m) for m in sparsifier._modules]
    flat = FlatMagnitudes(sparsifier._layout.segments, sparsifier._flat.dtype)

    whole = Segments([sparsifier._flat.numel()], device)

    def ours() -> torch.Tensor:
        flat.gather(sparsifier._flat)
        return flat.layer_quantiles(args.sparsity, whole)[0]

    def accelerator() -> torch.Tensor:
        flat.gather(sparsifier._flat)
        return segmented_quantiles(flat.flat, whole, args.sparsity)[0]

    assert torch.allclose(ours(), _sort_threshold(weights, args.sparsity))
    assert torch.equal(accelerator(), ours())
    repeats = args.threshold_repeats
    row: dict[str, Any] = {
        "model": name,
        "device": device.type,
        "weights": sum(w.numel() for w in weights),
        "dense_ms": 1000 * statistics.median(dense_times),
        "sparse_ms": 1000 * statistics.median(sparse_times),
        "best_ratio": min(sparse_times) / min(dense_times),
        "threshold_ms": _median_ms(ours, device, repeats),
        "accelerator_ms": _median_ms(accelerator, device, repeats),
        "sort_ms": _median_ms(lambda: _sort_threshold(weights, args.sparsity), device, repeats),
        "mask_update_ms": _median_ms(lambda: sparsifier.before_iteration(), device, repeats),
        "dense_launches": launches(lambda: dense.step(x, y), device) if args.steps else -1,
        "sparse_launches": launches(lambda: sparse.step(x, y), device) if args.steps else -1,
        "mask_launches": launches(lambda: sparsifier.before_iteration(), device),
    }
    with accelerator_path():  # on the CPU: the same counts along the accelerator's algorithms
        row["accelerator_sparse_launches"] = launches(lambda: sparse.step(x, y), device) if args.steps else -1
        row["accelerator_mask_launches"] = launches(lambda: sparsifier.before_iteration(), device)
    n = row["weights"]
    row["quantile_ms"] = (
        _median_ms(lambda: _quantile_threshold(weights, args.sparsity), device, repeats) if n < 2**24 else float("nan")
    )
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'model':14s} {'device':6s} {'weights':>10s} {'dense ms':>9s} {'sparse ms':>10s} {'ratio':>6s} {'best':>6s} "
        f"{'thresh ms':>10s} {'sort ms':>9s} {'speedup':>8s} {'quantile ms':>12s} {'speedup':>8s} {'accel ms':>9s} {'mask upd ms':>12s} "
        f"{'launches dense':>15s} {'sparse':>7s} {'mask upd':>9s} {'accel. path: sparse':>20s} {'mask upd':>9s}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['model']:14s} {r['device']:6s} {r['weights']:>10,d} {r['dense_ms']:9.1f} {r['sparse_ms']:10.1f} "
            f"{r['sparse_ms'] / r['dense_ms']:6.3f} {r['best_ratio']:6.3f} {r['threshold_ms']:10.2f} {r['sort_ms']:9.1f} "
            f"{r['sort_ms'] / r['threshold_ms']:7.1f}x {r['quantile_ms']:12.1f} {r['quantile_ms'] / r['threshold_ms']:7.1f}x "
            f"{r['accelerator_ms']:9.2f} {r['mask_update_ms']:12.2f} {r['dense_launches']:15d} {r['sparse_launches']:7d} {r['mask_launches']:9d} "
            f"{r['accelerator_sparse_launches']:20d} {r['accelerator_mask_launches']:9d}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        type=model_names,
        default="resnet20,resnet20x2,mobilenet_v1,densenet40_24,resnet18",
        help="comma-separated registry names",
    )
    parser.add_argument(
        "--steps", type=whole_number, default=6, help="timed training steps per model and mode (0: thresholds only)"
    )
    parser.add_argument("--warmup", type=whole_number, default=1, help="untimed steps first")
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--sparsity", type=float, default=0.9, help="constant sparsity of the sparse run")
    parser.add_argument(
        "--sparse-config",
        default="{}",
        help="more sparsity settings, YAML flow, e.g. '{threshold: layer, drop: {rho: 0.5, mode: layer}}'",
    )
    parser.add_argument("--threshold-repeats", type=positive_int, default=3)
    add_machine_arguments(parser)
    add_json_argument(parser)
    args = parser.parse_args()
    try:  # before any model is built (a bad value was a traceback after the first one)
        args.config = sparsity_config(args.sparsity, args.sparse_config)
    except ConfigError as err:
        parser.error(str(err))
    start(args, f"batch {args.batch_size}, sparsity {args.sparsity} {args.sparse_config}")
    print_table(bench_each(args, bench, FigureFile(args.json, "sparse"), "steps"))


if __name__ == "__main__":
    main()
