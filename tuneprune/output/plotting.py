"""Matplotlib set up in one place: the off-screen Agg backend, new figures, integer ticks, saving and closing them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed; imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def new_figure(
    rows: int = 1, cols: int = 1, width: float = 6.4, height: float = 4.2, grid: bool = True
) -> tuple[Any, np.ndarray]:
    """A figure of ``rows`` x ``cols`` axes of ``width`` x ``height`` inches each (always a flat array)."""
    fig, axes = pyplot().subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    if grid:
        for ax in axes.flat:
            ax.grid(alpha=0.3)
    return fig, axes.ravel()


def integer_x(ax: Any) -> None:
    """Whole-number ticks on the x axis (epochs, generations)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Lay out, write ``path`` (creating its directory) and close the figure."""
    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path
