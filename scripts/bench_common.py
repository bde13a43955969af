"""What every benchmark shares: the device and thread flags and the header naming the machine's load."""

from __future__ import annotations

import argparse
import os

import torch


def add_machine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def start(args: argparse.Namespace, settings: str) -> None:
    """Apply ``--threads`` and print torch's version, the threads and the load average with ``settings``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads (load average {load}), {settings}")
