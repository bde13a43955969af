"""Ray Tune's class API (``tune.Trainable``) against the function API (``tune.report``, what
``tuneprune/search/trainable.py`` uses): what the harness costs per reported iteration.

Each API runs the same experiment ``--repeats`` times on one local Ray, the two alternating which runs
first (the table gives each experiment, then the medians and their ratios): ``--trials`` trials of
``--iterations`` iterations, 1 CPU each, 2 at a time, actors reused (as ``tuneprune/search/runner.py``
runs them). An iteration does ``--matmuls`` products of 512x512 float32 matrices on one torch thread
(timed by the trial: its work), then checkpoints a 1 MiB tensor (``torch.save``; Tune keeps the latest):

    overhead / iteration = (slots x wall time - summed work) / (trials x iterations)   (slot-ms)
    gap / iteration      = a trial's next work starting - its work ending (report and checkpoint; mean)
    first start          = the first trial's code starting - ``Tuner.fit()`` called
    next start           = a later trial's code starting - the completion whose slot it took (mean)
    actors               = the processes the trials ran in (2: each slot's actor reused throughout)

    .venv/bin/python scripts/bench_trainable.py [--trials 8] [--iterations 20] [--matmuls 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from bench_common import device_name, load_average, positive_int

from tuneprune.cluster.quiet import configure_quiet

SLOTS = 2
STATE = "state.pt"


def fresh_state() -> torch.Tensor:
    """A trial's starting state (1 MiB), on the one torch thread of its 1 CPU."""
    torch.set_num_threads(1)
    return torch.randn(512, 512) / 512**0.5  # 1 MiB


def work(w: torch.Tensor, matmuls: int) -> tuple[torch.Tensor, dict[str, float]]:
    """``matmuls`` products by ``w``: the new state; when the work began (``time.time()``), its seconds, the process."""
    began, t0 = time.time(), time.perf_counter()
    x = w
    for _ in range(matmuls):
        x = torch.tanh(x @ w)
    return x, {"began": began, "work_s": time.perf_counter() - t0, "pid": os.getpid()}


def function_trial(config: dict[str, Any]) -> None:
    from ray import tune

    entered, w = time.time(), fresh_state()
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            w = torch.load(Path(directory) / STATE)
    for _ in range(config["iterations"]):
        w, timing = work(w, config["matmuls"])
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(w, Path(tmp) / STATE)
            tune.report({**timing, "entered": entered}, checkpoint=tune.Checkpoint.from_directory(tmp))


def class_trial() -> type:
    """The class API's trainable (defined here: ``ray.tune`` is imported after the environment is set)."""
    from ray import tune

    class ClassTrial(tune.Trainable):
        def setup(self, config: dict[str, Any]) -> None:
            self.entered, self.w, self.matmuls = time.time(), fresh_state(), config["matmuls"]

        def step(self) -> dict[str, Any]:
            self.w, timing = work(self.w, self.matmuls)
            return {**timing, "entered": self.entered}

        def save_checkpoint(self, checkpoint_dir: str) -> None:
            torch.save(self.w, Path(checkpoint_dir) / STATE)

        def load_checkpoint(self, checkpoint: dict | str | None) -> None:
            assert isinstance(checkpoint, str)  # the directory: save_checkpoint returns None
            self.w = torch.load(Path(checkpoint) / STATE)

        def reset_config(self, new_config: dict[str, Any]) -> bool:  # a reused actor's next trial
            self.setup(new_config)
            return True

    return ClassTrial


def measure(trainable: Any, every: int, args: argparse.Namespace, storage: str) -> dict[str, float]:
    """Run the experiment with ``trainable`` (Tune checkpointing it ``every`` iterations, 0: the function API,
    which reports its own); its wall time, summed work, overhead per iteration, start latencies."""
    from ray import tune

    entered: dict[str, float] = {}  # trial id -> its code started (time.time(): one machine's clock throughout)
    timings: dict[str, list[tuple[float, float]]] = {}  # trial id -> (work began, work seconds) per iteration
    ended: list[float] = []  # trials' completions, seen by the driver
    pids: set[int] = set()  # the actors' processes the trials ran in

    class Timer(tune.Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            entered[trial.trial_id] = result["entered"]
            timings.setdefault(trial.trial_id, []).append((result["began"], result["work_s"]))
            pids.add(result["pid"])

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            ended.append(time.time())

    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"iterations": args.iterations, "matmuls": args.matmuls},
        tune_config=tune.TuneConfig(num_samples=args.trials, max_concurrent_trials=SLOTS, reuse_actors=True),
        run_config=tune.RunConfig(
            storage_path=storage,
            stop={"training_iteration": args.iterations},
            verbose=0,
            callbacks=[Timer()],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_frequency=every),
        ),
    )
    t0, fit_started = time.perf_counter(), time.time()
    results = tuner.fit()
    wall = time.perf_counter() - t0
    iterations = args.trials * args.iterations
    if results.errors or sum(map(len, timings.values())) != iterations:
        raise RuntimeError(f"{len(timings)} trials' results of {iterations} iterations; errors: {results.errors}")
    work = sum(seconds for trial in timings.values() for _, seconds in trial)
    gaps = [b - (a + seconds) for t in timings.values() for (a, seconds), (b, _) in itertools.pairwise(t)]
    starts = sorted(entered.values())
    # the trials after the first SLOTS each take the slot of the earliest completion not yet taken
    next_starts = [start - end for start, end in zip(starts[SLOTS:], sorted(ended), strict=False)]
    return {  # the table's columns: seconds, or ms for the small figures
        "wall_s": wall,
        "work_s": work,
        "overhead_ms": 1000 * (SLOTS * wall - work) / iterations,
        "gap_ms": 1000 * sum(gaps) / len(gaps),
        "first_start_s": starts[0] - fit_started,
        "next_start_ms": 1000 * sum(next_starts) / len(next_starts),
        "actors": len(pids),
    }


def cells(label: str, values: Iterable[float]) -> str:
    return f"| {label} | " + " | ".join(f"{x:.2f}" for x in values) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=positive_int, default=8)
    parser.add_argument("--iterations", type=positive_int, default=20)
    parser.add_argument("--matmuls", type=positive_int, default=8, help="512x512 products per iteration")
    parser.add_argument(
        "--repeats", type=positive_int, default=3, help="experiments per API, alternating which runs first"
    )
    args = parser.parse_args()
    if args.trials <= SLOTS or args.iterations < 2:
        parser.error(f"need --trials > {SLOTS} (a trial waits for a slot), --iterations >= 2 (a gap)")
    configure_quiet()  # as a search does: no telemetry, no Tune loggers or progress output
    import ray

    print(
        f"device: {device_name(torch.device('cpu'))} (load average {load_average()}); Ray {ray.__version__}, "
        f"{args.trials} trials x {args.iterations} iterations of {args.matmuls} matmuls, {SLOTS} slots\n"
    )
    ray.init(num_cpus=SLOTS, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    trainables = {"function": (function_trial, 0), "class": (class_trial(), 1)}
    runs: dict[str, list[dict[str, float]]] = {api: [] for api in trainables}
    print(
        "| API | wall s | work s | overhead / iteration, slot-ms | gap / iteration ms | first start s | next start ms | actors |"
    )
    print("|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as storage:
        for repeat in range(args.repeats):
            for api in list(trainables)[:: 1 if repeat % 2 == 0 else -1]:
                runs[api].append(measure(*trainables[api], args, storage))
                print(cells(f"{api} {repeat + 1}", runs[api][-1].values()), flush=True)
    ray.shutdown()
    medians = {api: {key: statistics.median(r[key] for r in rows) for key in rows[0]} for api, rows in runs.items()}
    for api, row in medians.items():
        print(cells(f"{api}, median", row.values()))
    ratios = [medians["class"][key] / medians["function"][key] for key in medians["class"]]
    print(cells("class / function (medians)", ratios))
    print(f"\n(load average {load_average()} at the end)")


if __name__ == "__main__":
    main()
