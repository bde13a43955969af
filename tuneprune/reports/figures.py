"""Whole-number ticks for the reports' figures of epochs and generations (set-up: :mod:`tuneprune.output.plotting`)."""

from __future__ import annotations

from typing import Any


def integer_x(ax: Any) -> None:
    """Whole-number ticks on the x axis (epochs, generations)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
