"""Benchmark of whole training epochs: ``tuneprune.training.train`` dense and sparse against a plain loop.

    python scripts/bench_train.py [--models resnet20x2,mobilenet_v1] [--images 512] [--epochs 2]
                                  [--devices cpu,cuda] [--switches] [--threads N] [--json PATH]

For each model and device it trains on the same synthetic CIFAR-shaped data (3x32x32,
10 classes, batch 128, random crop + flip) with: a minimal plain PyTorch loop (SGD
momentum 0.9, weight decay, gradient clipping 3.0, ``tuneprune.data.augment_batch``),
``tuneprune.training.train`` dense, and ``train`` sparse (Feather defaults, target 0.9).
It prints the images per second of the last epoch (the earlier ones warm up) and the
ratios to the plain loop, all measured in this run: the best of ``--repeats`` rounds, each
round running every variant once in turn (each round starting with the next one), so that
other load on a shared machine and the process's own warm-up affect them alike.
``--switches`` adds the sparse run with ``precision: bf16`` and with ``channels_last: true``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from bench_common import (
    FigureFile,
    add_json_argument,
    add_machine_arguments,
    bench_each,
    load_average,
    model_names,
    positive_int,
    start,
)

from tuneprune.data import DatasetSplits, augment_batch
from tuneprune.models import create_model
from tuneprune.training import RunConfig, train

NUM_CLASSES = 10
EVAL_IMAGES = 256


def synthetic_splits(images: int, device: torch.device) -> DatasetSplits:
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, NUM_CLASSES, (n,), generator=g)

    (x, y), (xv, yv), (xt, yt) = split(images), split(EVAL_IMAGES), split(EVAL_IMAGES)
    return DatasetSplits("synthetic", x, y, xv, yv, xt, yt, NUM_CLASSES).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop(name: str, data: DatasetSplits, device: torch.device, args: argparse.Namespace) -> float:
    """Images per second of the last epoch of a minimal PyTorch training loop."""
    torch.manual_seed(0)
    model = create_model(name, NUM_CLASSES, 3).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x, y, n = data.x_train, data.y_train, len(data.x_train)
    pad_value = torch.tensor(data.pad_value, device=device)
    elapsed = 0.0
    for epoch in range(args.epochs):
        model.train()
        _sync(device)
        start = time.perf_counter()
        g = torch.Generator(device=device).manual_seed(epoch)
        order = torch.randperm(n, generator=g, device=device)
        for i in range(0, n, args.batch_size):
            index = order[i : i + args.batch_size]
            loss = F.cross_entropy(model(augment_batch(x[index], g, pad_value=pad_value)), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 3.0)
            optimizer.step()
        _sync(device)
        elapsed = time.perf_counter() - start
    return n / elapsed


def tuneprune_loop(name: str, data: DatasetSplits, device: torch.device, args: argparse.Namespace, **extra) -> float:
    """Images per second of the last epoch of ``tuneprune.training.train`` (its ``train_time``)."""
    config = RunConfig(
        model=name, dataset="synthetic", epochs=args.epochs, batch_size=args.batch_size, augment=True,
        device=device.type, **extra,
    )  # fmt: skip
    history = train(config, data=data).history
    return len(data.x_train) / history[-1]["train_time"]


def bench(name: str, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    data = synthetic_splits(args.images, device)
    sparse = {"sparsity": {"target": 0.9}}
    variants = {
        "plain": lambda: plain_loop(name, data, device, args),
        "dense": lambda: tuneprune_loop(name, data, device, args),
        "sparse": lambda: tuneprune_loop(name, data, device, args, **sparse),
    }
    if args.switches:
        variants["sparse bf16"] = lambda: tuneprune_loop(name, data, device, args, precision="bf16", **sparse)
        variants["sparse channels_last"] = lambda: tuneprune_loop(
            name, data, device, args, channels_last=True, **sparse
        )
    best = dict.fromkeys(variants, 0.0)
    keys = list(variants)
    for r in range(args.repeats):  # each round starts with the next variant: none always runs first
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            best[key] = max(best[key], variants[key]())
    return {"model": name, "device": device.type, **best}


def print_table(rows: list[dict[str, Any]]) -> None:
    runs = [key for key in rows[0] if key not in ("model", "device")]
    header = f"{'model':14s} {'device':6s} " + " ".join(f"{run + ' img/s':>22s}" for run in runs)
    header += " " + " ".join(f"{run + '/plain':>22s}" for run in runs[1:])
    print(header)
    print("-" * len(header))
    for r in rows:
        line = f"{r['model']:14s} {r['device']:6s} " + " ".join(f"{r[run]:22.1f}" for run in runs)
        line += " " + " ".join(f"{r[run] / r['plain']:22.3f}" for run in runs[1:])
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        type=model_names,
        default="resnet20x2,mobilenet_v1,densenet40_24,resnet18",
        help="comma-separated registry names",
    )
    parser.add_argument("--images", type=positive_int, default=512, help="training images per epoch")
    parser.add_argument("--epochs", type=positive_int, default=2, help="epochs per run; the last one is timed")
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument(
        "--repeats", type=positive_int, default=2, help="rounds of all variants; each figure is its best round"
    )
    parser.add_argument(
        "--switches", action="store_true", help="also the sparse run with bf16 autocast and channels_last"
    )
    add_machine_arguments(parser)
    add_json_argument(parser)
    args = parser.parse_args()
    start(
        args,
        f"batch {args.batch_size}, {args.images} images, epoch {args.epochs} of {args.epochs} timed, best of {args.repeats}",
    )
    print_table(bench_each(args, bench, FigureFile(args.json, "train"), "epochs"))
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
