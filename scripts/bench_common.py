"""What every benchmark shares: the device and thread flags, the header naming the machine's load, the
figures kept as JSON (``--json``), and the count of what one call issues to the device."""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from tuneprune.models import MODELS, create_model
from tuneprune.sparsity import Sparsifier, SparsityConfig

NUM_CLASSES = 10


def add_machine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=device_names, default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")


def whole_number(text: str, minimum: int = 0) -> int:
    """An argparse type: a whole number >= ``minimum`` (argparse names the option and exits 2 otherwise)."""
    if not text.isdigit() or int(text) < minimum:
        raise argparse.ArgumentTypeError(f"a whole number >= {minimum} is required, got {text!r}")
    return int(text)


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    return whole_number(text, 1)


def whole_numbers(text: str, minimum: int = 0) -> list[int]:
    """An argparse type: comma-separated whole numbers >= ``minimum``."""
    return [whole_number(part, minimum) for part in text.split(",")]


def positive_ints(text: str) -> list[int]:
    """An argparse type: comma-separated whole numbers >= 1."""
    return whole_numbers(text, 1)


def model_names(text: str) -> list[str]:
    """An argparse type: comma-separated names of ``tuneprune.models.MODELS``."""
    names = text.split(",")
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown model {unknown[0]!r}, allowed: {', '.join(sorted(MODELS))}")
    return names


def device_names(text: str) -> list[str]:
    """An argparse type: comma-separated devices of this machine (``cpu``, ``cuda``, ``cuda:1``)."""
    names = text.split(",")
    for name in names:
        try:
            kind = torch.device(name).type
        except RuntimeError:
            kind = None
        if kind not in ("cpu", "cuda"):
            raise argparse.ArgumentTypeError(f"unknown device {name!r}, allowed: cpu, cuda")
        if kind == "cuda" and not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{name}: CUDA is not available on this machine")
    return names


def load_average() -> str:
    """The machine's load averages over 1, 5 and 15 minutes, as printed beside a benchmark's figures."""
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def start(args: argparse.Namespace, settings: str) -> None:
    """Apply ``--threads`` and print torch's version, the threads and the load average with ``settings``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads (load average {load_average()}), {settings}"
    )


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="also write the figures to PATH as JSON, rewritten after each row"
    )


def device_name(device: torch.device) -> str:
    """The accelerator's name (``torch.cuda.get_device_name``), or the CPU's model (else architecture) and cores."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.machine())
    return f"CPU {model}, {os.cpu_count()} cores"


class FigureFile:
    """The rows a benchmark measures, kept as JSON at ``path`` (nowhere when None).

    The file, ``{"bench", "torch", "devices": {device type: name}, "tables": {table: [row, ...]}}``,
    is rewritten after each row, so that a run cut short (a time limit) keeps what it measured.
    """

    def __init__(self, path: Path | None, bench: str) -> None:
        self.path = path
        self.record: dict[str, Any] = {"bench": bench, "torch": torch.__version__, "devices": {}, "tables": {}}

    def add(self, table: str, row: dict[str, Any]) -> None:
        if self.path is None:
            return
        device = str(row["device"])
        if device not in self.record["devices"]:
            self.record["devices"][device] = device_name(torch.device(device))
        self.record["tables"].setdefault(table, []).append(row)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(self.record, indent=1))
        partial.replace(self.path)


def bench_each(
    args: argparse.Namespace,
    bench: Callable[[str, torch.device, argparse.Namespace], dict[str, Any]],
    figures: FigureFile,
    table: str,
) -> list[dict[str, Any]]:
    """``bench(model, device, args)`` for each device of ``--devices`` and model of ``--models``; each row also goes to ``figures``."""
    rows = []
    for device in args.devices:
        for name in args.models:
            rows.append(bench(name, torch.device(device), args))
            figures.add(table, rows[-1])
    return rows


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _is_top_level(event) -> bool:  # event: a profiler event
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return False
        parent = parent.cpu_parent
    return True


def launches(fn: Callable[[], object], device: torch.device) -> int:
    """Device kernels (CUDA) or top-level aten operators (CPU) issued by one call of ``fn``."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    events = prof.events()
    if device.type == "cuda":
        return sum(1 for e in events if e.device_type == DeviceType.CUDA)
    return sum(1 for e in events if e.name.startswith("aten::") and _is_top_level(e))


class SoloStep:
    """One model with its optimizer (and a Sparsifier when ``sparsity`` is given); ``step()`` is one training iteration."""

    def __init__(self, name: str, device: torch.device, sparsity: SparsityConfig | None) -> None:
        torch.manual_seed(0)
        self.model = create_model(name, NUM_CLASSES, 3).to(device)
        self.sparsifier = (
            Sparsifier.from_config(self.model, sparsity, steps_per_epoch=100, epochs=10) if sparsity else None
        )
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.sparsifier is not None:
            self.sparsifier.before_iteration()
        self.optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(x), y).backward()
        self.optimizer.step()
