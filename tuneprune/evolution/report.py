"""The evolution's plot: front.png (its tables are written by :func:`~tuneprune.output.summaries.write_rows`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneprune.output.plotting import new_figure, save_figure


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
