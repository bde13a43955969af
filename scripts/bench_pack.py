"""Benchmark of packed trials: aggregate training throughput of K trials trained together.

    python scripts/bench_pack.py [--models resnet20x2,densenet40_24] [--packs 1,2,4]
                                 [--steps 3] [--batch-size 32] [--repeats 2] [--device cpu|cuda|all]
                                 [--no-processes] [--json PATH]

For each model and device (the CPU always, CUDA when present) it trains, on synthetic
CIFAR-shaped data, one epoch of ``--steps`` steps of sparse trials (Feather defaults,
each trial its own seed and target as in a search) and prints images/s measured in this
run for:

- ``solo``: one trial alone on the project's training path (``tuneprune.training.train``);
- ``sequential``: K trials on that path, one after the other;
- ``processes``: K trials on that path as K concurrent processes on the same device (all
  started, then timed from the first step to the last; on the CPU each with its share
  of the threads, as K trials of one CPU each; ``--no-processes`` leaves them out: starting
  K processes, each with its own CUDA context, takes longer than the rest);
- ``packed``: the K trials as one :class:`~tuneprune.training.PackedTrainer` (its default
  forward mode for the device, or ``--forward``),

and the ratios of packed to each. The time counted is the training epoch
(its ``train_time``: steps, thresholds, optimizer), without evaluation. Each figure is
the best of ``--repeats`` runs, the three interleaved, so that other load on a
shared machine (its load average is printed) affects both alike.

A second table counts, with ``torch.profiler``, what one training step issues (kernels on
CUDA; on the CPU top-level ``aten::`` operators, each at most one kernel launch on an
accelerator): a packed step of K members with the fused (``vmap``) forward and with the
``loop`` forward, against K steps of one sparse trial alone, all along the accelerator
path (:func:`~tuneprune.sparsity.dispatch.accelerator_path`). These counts hold on any
device: a GPU step of these models is bound by its launches, so the ratio is what
packing can save there.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import os
import time
from typing import Any

import torch
from bench_common import (
    FigureFile,
    SoloStep,
    add_json_argument,
    launches,
    model_names,
    positive_int,
    positive_ints,
)

from tuneprune.shared.config import validate
from tuneprune.sparsity import SparsityConfig
from tuneprune.sparsity.dispatch import accelerator_path
from tuneprune.training import PackedTrainer, RunConfig, train

CPU_DEFAULTS: dict[str, Any] = {"packs": "1,2,4", "steps": 3, "batch_size": 32, "repeats": 2}
CUDA_DEFAULTS: dict[str, Any] = {"packs": "1,2,4,8,16", "steps": 20, "batch_size": 128, "repeats": 3}
TARGETS = (0.9, 0.95, 0.8, 0.98)


def trial_config(model: str, device: str, seed: int, steps: int, batch_size: int) -> RunConfig:
    """One sparse trial of a search: one epoch of ``steps`` steps on synthetic 32x32 data."""
    return validate(
        RunConfig,
        {
            "model": model,
            "dataset": "synthetic",
            "synthetic_samples": steps * batch_size,
            "image_size": 32,
            "epochs": 1,
            "batch_size": batch_size,
            "device": device,
            "seed": seed,
            "sparsity": {"target": TARGETS[seed % len(TARGETS)]},
        },
    )


class _StepClock:
    """A training hook that waits at ``barrier`` before the first step, then notes its wall-clock time and the epoch's end."""

    def __init__(self, barrier: Any) -> None:
        self.barrier, self.start, self.end, self.steps = barrier, 0.0, 0.0, 0

    def before_iteration(self) -> None:
        if self.steps == 0:
            self.barrier.wait()
            self.start = time.time()
        self.steps += 1

    def after_backward(self) -> None:
        """Nothing to do after the backward pass."""

    def end_epoch(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.end = time.time()

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Stateless."""


def solo_images_per_second(config: RunConfig) -> float:
    return config.synthetic_samples / train(config).history[0]["train_time"]


def sequential_images_per_second(configs: list[RunConfig]) -> float:
    seconds = sum(train(config).history[0]["train_time"] for config in configs)
    return sum(c.synthetic_samples for c in configs) / seconds


def _process_worker(config: RunConfig, barrier: Any, queue: Any) -> None:
    clock = _StepClock(barrier)
    train(config, hooks=[clock])
    queue.put((clock.start, clock.end))


def processes_images_per_second(configs: list[RunConfig]) -> float:
    """K trials as K concurrent processes on the same device, timed from the first step to the last."""
    context = mp.get_context("spawn")
    barrier, queue = context.Barrier(len(configs)), context.Queue()
    workers = [context.Process(target=_process_worker, args=(c, barrier, queue)) for c in configs]
    for worker in workers:
        worker.start()
    spans = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    return sum(c.synthetic_samples for c in configs) / (max(e for _, e in spans) - min(s for s, _ in spans))


def packed_images_per_second(configs: list[RunConfig], forward_mode: str | None) -> float:
    trainer = PackedTrainer(configs, forward_mode)
    metrics = trainer.train_epoch()
    return sum(c.synthetic_samples for c in configs) / next(iter(metrics.values()))["train_time"]


def _ratio(packed: float, other: float | None) -> str:
    return "-" if other is None else f"{packed / other:.2f}"


def bench_device(
    device: str, models: list[str], packs: list[int], steps: int, batch_size: int, repeats: int, forward: str | None,
    with_processes: bool, figures: FigureFile,
) -> None:  # fmt: skip
    threads = torch.get_num_threads()
    print(
        f"\n## {device}: {threads} threads, batch {batch_size}, {steps} steps, best of {repeats}, load average {os.getloadavg()}"
    )
    print(
        "| model | K | solo img/s | sequential img/s | processes img/s | packed img/s "
        "| packed/solo | packed/sequential | packed/processes |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for model in models:
        configs = [trial_config(model, device, seed, steps, batch_size) for seed in range(max(packs))]
        solo_images_per_second(configs[0])  # warm-up: kernels, allocator
        solo = max(solo_images_per_second(configs[0]) for _ in range(repeats))
        for k in packs:
            members = configs[:k]
            # K processes share the CPU's threads, as K trials of one CPU each would
            apart = [c.model_copy(update={"num_threads": max(threads // k, 1)}) for c in members]
            sequential = packed = 0.0
            processes = 0.0 if with_processes else None
            for _ in range(repeats):
                sequential = max(sequential, sequential_images_per_second(members))
                if processes is not None:
                    processes = max(processes, processes_images_per_second(apart))
                packed = max(packed, packed_images_per_second(members, forward))
            print(
                f"| {model} | {k} | {solo:.1f} | {sequential:.1f} | {'-' if processes is None else f'{processes:.1f}'} "
                f"| {packed:.1f} | {packed / solo:.2f} | {packed / sequential:.2f} | {_ratio(packed, processes)} |",
                flush=True,
            )
            row = {"solo": solo, "sequential": sequential, "processes": processes, "packed": packed}
            figures.add("throughput", {"model": model, "device": device, "k": k, **row})
    print(f"load average after: {os.getloadavg()}")


def packed_step_launches(configs: list[RunConfig], forward_mode: str, device: torch.device) -> int:
    """What one packed step of ``configs`` issues, after a first step (momentum buffers, previous masks)."""
    trainer = PackedTrainer(configs, forward_mode)
    batches = [next(iter(loader)) for loader in trainer.loaders]
    trainer.train_step(0, batches)
    return launches(lambda: trainer.train_step(1, batches), device)


def launch_table(device: str, models: list[str], packs: list[int], batch_size: int, figures: FigureFile) -> None:
    where = torch.device(device)
    print(f"\n## {device}: launches per training step (accelerator path, batch {batch_size})")
    print("| model | K | packed, vmap | per member | packed, loop | K x solo | K x solo / packed vmap |")
    print("|---|---|---|---|---|---|---|")
    for model in models:
        configs = [trial_config(model, device, seed, 2, batch_size) for seed in range(max(packs))]
        x = torch.randn(batch_size, 3, 32, 32, device=where)
        y = torch.randint(0, 10, (batch_size,), device=where)
        with accelerator_path():
            solo = SoloStep(model, where, SparsityConfig(target=0.9, scheduler={"type": "constant"}))
            solo.step(x, y)
            one = launches(functools.partial(solo.step, x, y), where)
            for k in packs:
                fused = packed_step_launches(configs[:k], "vmap", where)
                looped = packed_step_launches(configs[:k], "loop", where)
                print(
                    f"| {model} | {k} | {fused} | {fused / k:.0f} | {looped} | {k * one} | {k * one / fused:.1f} |",
                    flush=True,
                )
                row = {"packed_vmap": fused, "packed_loop": looped, "solo_times_k": k * one}
                figures.add("launches", {"model": model, "device": device, "k": k, **row})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=model_names, default="resnet20x2,densenet40_24")
    parser.add_argument(
        "--packs", type=positive_ints, default=None, help="comma-separated K (default: CPU 1,2,4; CUDA 1,2,4,8,16)"
    )
    parser.add_argument(
        "--steps", type=positive_int, default=None, help="training steps per trial (default: CPU 3, CUDA 20)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=None, help="default: CPU 32, CUDA 128")
    parser.add_argument(
        "--repeats", type=positive_int, default=None, help="best of this many runs (default: CPU 2, CUDA 3)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument(
        "--forward", choices=("vmap", "loop"), default=None, help="packed forward mode (default per device)"
    )
    parser.add_argument("--launches-only", action="store_true", help="only the table of launches per step")
    parser.add_argument("--no-processes", action="store_true", help="leave out the K concurrent processes")
    add_json_argument(parser)
    args = parser.parse_args()
    figures = FigureFile(args.json, "pack")
    devices = ["cpu"] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append("cuda")
    if args.device == "cuda" and not devices:
        parser.error("--device cuda: CUDA is not available on this machine")
    for device in devices:
        defaults = CPU_DEFAULTS if device == "cpu" else CUDA_DEFAULTS
        packs = args.packs or positive_ints(defaults["packs"])
        steps, batch_size = args.steps or defaults["steps"], args.batch_size or defaults["batch_size"]
        if not args.launches_only:
            repeats = args.repeats or defaults["repeats"]
            bench_device(
                device,
                args.models,
                packs,
                steps,
                batch_size,
                repeats,
                args.forward,
                not args.no_processes,
                figures,
            )
        launch_table(device, args.models, packs, 8 if device == "cpu" else batch_size, figures)


if __name__ == "__main__":
    main()
