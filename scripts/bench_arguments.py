"""The benchmarks' argparse types for counts, in the standard library only: ``scripts/gpu_table.py``, which needs no
torch, words a bad count as the benchmarks do (argparse names the option and exits 2)."""

from __future__ import annotations

import argparse


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
