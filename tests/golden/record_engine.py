"""Golden results of the sparse training engine on the CPU (issue 20: recorded before the engine changes).

Prints, as JSON, what the engine computes in every case a change of the engine must keep:

- ``matrix``: the Sparsifier in every combination of threshold mode, theta policy, scheduler
  and elimination of ``tests/sparsity/test_equivalence.py`` (its cases and model), on its CPU path and its
  accelerator path (run on CPU tensors): per epoch its ``metrics()`` and layer sparsities,
  at the end each prunable layer's mask and weights;
- ``runs``: end-to-end digits runs of ``train`` (the configs of ``tests/training/test_packing.py``: dense; sparse global; layer threshold with
  log-density theta and layer elimination; adaptive scheduler; bf16; a run resumed from its
  first epoch's checkpoint) and a pack of three (``train_packed``): per epoch every metric
  but the times, at the end each prunable layer's mask and weights.

A mask is the SHA-256 of the layer's nonzero pattern, weights the SHA-256 of their float32
bytes and their sum of magnitudes (float64), so that a change that rounds differently can
still be compared to a stated tolerance. Metrics are Python floats (JSON keeps them exact).

The figures depend on the CPU's kernels; ``tests/system/test_golden.py`` runs this script under
:data:`PINNED`, which takes the machine out of them (ATen's scalar kernels, oneDNN off,
MKL's reproducible code path, one thread). To record again (only with a reason the
closing note states): ``python tests/golden/record_engine.py --write``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).with_name("engine.json")
PINNED = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "CUDA_VISIBLE_DEVICES": "",
}

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: the tests whose cases these are

from tests.sparsity.test_equivalence import (  # noqa: E402
    CASES,
    DROPS,
    EPOCHS,
    SCHEDULERS,
    STEPS_PER_EPOCH,
    THETAS,
    tiny_model,
)
from tests.training.test_packing import ADAPTIVE_DROP, BASE, DENSE, GLOBAL_CUBIC, LAYER_LOG_DENSITY  # noqa: E402

RUNS: dict[str, dict[str, Any]] = {
    "dense": DENSE,
    "sparse-global": GLOBAL_CUBIC,
    "layer-logdensity-layerdrop": LAYER_LOG_DENSITY,
    "adaptive": ADAPTIVE_DROP,
    "bf16": {**GLOBAL_CUBIC, "precision": "bf16"},
}


def weights_of(model) -> dict[str, dict[str, Any]]:
    """Each conv and linear weight of ``model`` (plain, after finalize): mask hash, weight hash, sum of |w|."""
    import torch

    out = {}
    for key, value in model.state_dict().items():
        if not key.endswith("weight") or value.dim() < 2:
            continue
        w = value.detach().to(torch.float32).contiguous().cpu()
        out[key] = {
            "mask": hashlib.sha256((w != 0).numpy().tobytes()).hexdigest(),
            "weights": hashlib.sha256(w.numpy().tobytes()).hexdigest(),
            "abs_sum": float(w.double().abs().sum()),
        }
    return out


def without_times(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if not k.endswith("_time")} for h in history]


def matrix_case(threshold: str, theta: str, scheduler: str, drop: str) -> dict[str, Any]:
    """The Sparsifier on the equivalence test's tiny model: SGD over 2 epochs of 3 iterations on seeded data."""
    import torch
    import torch.nn.functional as F

    from tuneprune.sparsity import Sparsifier, SparsityConfig

    config = SparsityConfig(
        target=0.9, threshold=threshold, theta=THETAS[theta], scheduler=SCHEDULERS[scheduler], drop=DROPS[drop]
    )
    torch.manual_seed(0)
    model = tiny_model()
    sparsifier = Sparsifier.from_config(model, config, steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(1)
    epochs = []
    for _ in range(EPOCHS):
        for _ in range(STEPS_PER_EPOCH):
            x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
            optimizer.zero_grad()
            sparsifier.before_iteration()
            F.cross_entropy(model(x), y).backward()
            sparsifier.after_backward()
            optimizer.step()
        sparsifier.end_epoch()
        epochs.append({"metrics": sparsifier.metrics(), "layer_sparsity": sparsifier.layer_sparsity})
    return {"epochs": epochs, "final": weights_of(sparsifier.finalize())}


def matrix() -> dict[str, Any]:
    from tuneprune.sparsity.dispatch import accelerator_path

    out = {}
    for case in CASES:
        out[f"cpu/{'-'.join(case)}"] = matrix_case(*case)
        with accelerator_path():
            out[f"accelerator/{'-'.join(case)}"] = matrix_case(*case)
    return out


def runs(solo: bool = True, resumed_and_packed: bool = True) -> dict[str, Any]:
    """The runs of ``RUNS`` (``solo``), then the resumed run and the pack of three (``resumed_and_packed``)."""
    from tuneprune.shared.config import validate
    from tuneprune.training import RunConfig, train, train_packed

    def config(overrides: dict[str, Any]) -> RunConfig:
        return validate(RunConfig, {**BASE, **overrides})

    out = {}
    for name, overrides in RUNS.items() if solo else ():
        result = train(config(overrides))
        out[name] = {"history": without_times(result.history), "final": weights_of(result.model)}
    if not resumed_and_packed:
        return out

    with tempfile.TemporaryDirectory() as tmp:
        first = Path(tmp) / "epoch1.pt"

        def keep_first(metrics: dict[str, float], checkpoint: Path | None) -> None:
            if metrics["epoch"] == 1 and checkpoint is not None:
                shutil.copy2(checkpoint, first)

        train(config(GLOBAL_CUBIC), callbacks=[keep_first], checkpoint_dir=Path(tmp) / "run")
        resumed = train(config(GLOBAL_CUBIC), resume_from=first)
        out["sparse-global-resumed-from-epoch-1"] = {
            "history": without_times(resumed.history),
            "final": weights_of(resumed.model),
        }

    members = train_packed([config(GLOBAL_CUBIC), config(LAYER_LOG_DENSITY), config(ADAPTIVE_DROP)])
    out["pack-of-3"] = {
        "members": [
            {
                "status": m.status,
                "history": without_times(m.history),
                "final": weights_of(m.result.model) if m.result is not None else None,
            }
            for m in members
        ]
    }
    return out


# The record in parts that take about as long each: (its key in the record, the function that computes it).
PARTS = {
    "matrix": ("matrix", matrix),
    "runs-solo": ("runs", lambda: runs(resumed_and_packed=False)),
    "runs-resumed-and-packed": ("runs", lambda: runs(solo=False)),
}


def record(parts: tuple[str, ...] = tuple(PARTS)) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    with torch.backends.mkldnn.flags(enabled=False):  # oneDNN picks its kernels by the CPU's instruction set
        for part in parts:
            key, compute = PARTS[part]
            out.setdefault(key, {}).update(compute())
    return out


def pinned_record() -> dict[str, Any]:
    """:func:`record` in fresh processes under :data:`PINNED` (the variables must be set before torch loads).

    Each part in a process of its own, all at once, one thread each: on two cores the record takes
    about half as long as in one process. Each case and run seeds itself, so a part computes the
    same figures alone as after the others (the comparison with the golden file shows it).
    """
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, **PINNED, "PYTHONPATH": str(root)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--print", "--part", part],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for part in PARTS
    ]
    out: dict[str, Any] = {}
    for proc in procs:
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, stdout, stderr)
        for key, entries in json.loads(stdout).items():
            out.setdefault(key, {}).update(entries)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"record under the pinned kernels into {GOLDEN.name}")
    parser.add_argument("--print", action="store_true", help="print this process's record (no pinning)")
    parser.add_argument("--part", choices=PARTS, action="append", help="with --print: only this part (default: all)")
    args = parser.parse_args()
    if args.print:
        json.dump(record(tuple(args.part or PARTS)), sys.stdout)
    elif args.write:
        GOLDEN.write_text(json.dumps(pinned_record(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN}")
    else:
        parser.error("--write or --print")


if __name__ == "__main__":
    main()
