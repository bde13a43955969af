"""The evolution's files: population per generation, front.csv and front.png."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneprune.output.plotting import new_figure, save_figure


def write_rows(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """A CSV with one column per key of the first row; lists are written as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0]) if rows else []
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([json.dumps(row[c]) if isinstance(row[c], list) else row[c] for c in columns])
    return path


def plot_front(front: Sequence[dict[str, Any]], dense_accuracy: float, path: str | Path) -> Path:
    """Accuracy vs sparsity: the stochastic front, deterministic pruning at the same rates, the dense model."""
    fig, (ax,) = new_figure(width=6.0, height=4.5)
    sparsity = [r["sparsity"] for r in front]
    ax.plot(sparsity, [r["accuracy"] for r in front], "o-", label="stochastic pruning (Pareto front, median of k)")
    ax.plot(sparsity, [r["deterministic_accuracy"] for r in front], "s--", label="deterministic pruning, same rates")
    ax.axhline(dense_accuracy, color="grey", linestyle=":", label="dense")
    ax.set_xlabel("sparsity")
    ax.set_ylabel("one-shot validation accuracy")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
