"""Early stopping on a two-objective search: the front it keeps against the training it saves (formulas §10.9).

One small search on digits (small_cnn; val_acc and sparsity, both maximised; lr and the
target sparsity searched) is run under three rules, with the same seeded random sampler,
so every rule is handed the same configurations in the same order:

- ``none``: no early stopping;
- ``first``: ASHA on the first objective alone (val_acc; what the search did before);
- ``crowding``: multi-objective ASHA, non-dominated sorting and crowding distance inside a front;
- ``epsilon_net``: multi-objective ASHA, non-dominated sorting and MOASHA's epsilon-net inside a front.

For each seed it prints the hypervolume of the completed trials' (sparsity, val_acc)
front (reference (0, 0)) and the epochs trained in all, each as a ratio to ``none``;
then the medians over the seeds. One process, one local Ray, all searches in turn.

    .venv/bin/python scripts/bench_early_stop.py [--seeds 0,1,2] [--trials 16] [--epochs 8] [--cpus 2]
        [--grace-period 1] [--reduction-factor 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from bench_common import device_name, load_average, positive_int, whole_numbers

RULES = ("none", "first", "crowding", "epsilon_net")


def space(args: argparse.Namespace, seed: int, rule: str) -> dict[str, Any]:
    """The benchmark's search space under ``rule``; ``first`` searches val_acc alone (same random draws)."""
    stopping = {"type": "asha", "grace_period": args.grace_period, "reduction_factor": args.reduction_factor}
    if rule in ("crowding", "epsilon_net"):
        stopping["front_order"] = rule
    return {
        "name": f"es-{rule}-{seed}",
        "base": {
            "model": "small_cnn", "dataset": "digits", "epochs": args.epochs, "batch_size": 64,
            "sparsity": {"target": 0.5, "scheduler": {"end_fraction": 0.25}},
        },
        "params": {
            "lr": {"type": "float", "low": 0.001, "high": 0.3, "log": True},
            "sparsity.target": {"type": "float", "low": 0.5, "high": 0.999},
        },
        "objectives": {"val_acc": "max"} if rule == "first" else {"val_acc": "max", "sparsity": "max"},
        "sampler": {"type": "random", "seed": seed},
        "num_samples": args.trials,
        "max_concurrent": args.cpus,
        "early_stopping": {"type": "none"} if rule == "none" else stopping,
    }  # fmt: skip


def measure(summary: Any) -> tuple[float, int]:
    """Hypervolume of the completed trials' (sparsity, val_acc) front, reference (0, 0); epochs trained by all trials."""
    from tuneprune.shared.pareto import Plane, front_indices, hypervolume

    plane = Plane("sparsity", "val_acc")
    done = [t["metrics"] for t in summary.trials if t["state"] == "COMPLETE"]
    points = np.array([[m["sparsity"], m["val_acc"]] for m in done], dtype=float).reshape(-1, 2)
    hv = hypervolume(points[front_indices(points, plane)], plane, (0.0, 0.0))
    return hv, sum(int(t["metrics"].get("epoch", 0)) for t in summary.trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=whole_numbers, default="0,1,2")
    parser.add_argument("--trials", type=positive_int, default=16)
    parser.add_argument("--epochs", type=positive_int, default=8)
    parser.add_argument("--cpus", type=positive_int, default=2)
    parser.add_argument("--grace-period", type=positive_int, default=1)
    parser.add_argument("--reduction-factor", type=float, default=2.0)
    args = parser.parse_args()
    for var, value in (("RAY_USAGE_STATS_ENABLED", "0"), ("MLFLOW_DISABLE_TELEMETRY", "true"), ("DO_NOT_TRACK", "1")):
        os.environ.setdefault(var, value)
    import ray

    from tuneprune.search import prepare_search, run_search
    from tuneprune.search.space import load_space
    from tuneprune.shared.config import ConfigError

    seeds = args.seeds
    try:  # the spaces as the searches will load them, before Ray starts (--reduction-factor 1 failed after it)
        for seed in seeds:
            for rule in RULES:
                load_space(space(args, seed, rule))
    except ConfigError as err:
        parser.error(str(err))
    print(
        f"device: {device_name(torch.device('cpu'))} (load average {load_average()}); {args.trials} trials of {args.epochs} epochs per search, seeds {seeds}, "
        f"grace period {args.grace_period}, reduction factor {args.reduction_factor:g}"
    )
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    ratios: dict[str, list[tuple[float, float]]] = {rule: [] for rule in RULES}
    print("| seed | rule | hypervolume | epochs | HV / none | epochs / none |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            measured = {}
            for rule in RULES:
                path = Path(tmp) / f"{rule}-{seed}.yaml"
                path.write_text(yaml.safe_dump(space(args, seed, rule), sort_keys=False))
                prepared = prepare_search(
                    path,
                    results_root=Path(tmp) / "runs",
                    tracking_uri=f"sqlite:///{tmp}/mlruns.db",
                    storage_url=f"sqlite:///{tmp}/optuna.db",
                )
                summary = run_search(prepared, progress=False)
                measured[rule] = measure(summary)
                hv, epochs = measured[rule]
                base_hv, base_epochs = measured["none"]
                ratios[rule].append((hv / base_hv, epochs / base_epochs))
                print(
                    f"| {seed} | {rule} | {hv:.4f} | {epochs} | {hv / base_hv:.3f} | {epochs / base_epochs:.3f} |",
                    flush=True,
                )
    ray.shutdown()
    print(f"\nmedian of {len(seeds)} seeds, device: {device_name(torch.device('cpu'))} (load average {load_average()})")
    print("| rule | HV / none | epochs / none |")
    print("|---|---|---|")
    for rule in RULES:
        print(
            f"| {rule} | {statistics.median(r[0] for r in ratios[rule]):.3f} | {statistics.median(r[1] for r in ratios[rule]):.3f} |"
        )


if __name__ == "__main__":
    main()
