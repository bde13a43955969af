"""Figures off-screen: new figures of any grid, saved (directory created) and closed."""

from __future__ import annotations

from tuneprune.output.plotting import new_figure, pyplot, save_figure


def test_a_new_figure_has_a_flat_array_of_sized_axes():
    fig, axes = new_figure(2, 3, width=4.0, height=2.0)
    assert axes.shape == (6,)
    assert tuple(fig.get_size_inches()) == (12.0, 4.0)
    assert all(ax.xaxis.get_gridlines()[0].get_visible() for ax in axes)
    fig, axes = new_figure(grid=False)
    assert axes.shape == (1,)
    assert not axes[0].xaxis.get_gridlines()[0].get_visible()
    pyplot().close("all")


def test_a_saved_figure_is_a_png_and_closed(tmp_path):
    fig, (ax,) = new_figure()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "new" / "front.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert not pyplot().fignum_exists(fig.number)
    assert pyplot().get_backend().lower() == "agg"
