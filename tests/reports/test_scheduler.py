"""``fit-scheduler``'s figures (formulas §3): the published presets drawn with the D of every model family searched."""

from __future__ import annotations

import numpy as np

from tuneprune.reports.scheduler import lambda_figure
from tuneprune.sparsity import PRESETS, AdaptiveScheduler, ModelFamily, preset_constants


def lambda_of(constants: dict[str, float], s: np.ndarray) -> np.ndarray:
    scheduler = AdaptiveScheduler(**constants, final_sparsity=1.0, epochs=160)
    return np.array([scheduler.lambda_at(x) for x in s])


def test_the_lambda_plot_draws_each_searched_familys_presets_and_its_found_constants():
    """A search over resnet20 and mobilenet_v1 found constants for both: each family gets its panel, with lambda1 and
    lambda2 at that family's D (MobileNet's differs) and the constants found on its trials, not the first trial's."""
    resnet = {"A": 0.4, "B": 0.85, "C": 30.0, "D": 0.0}
    mobilenet = {"A": 0.2, "B": 0.9, "C": 50.0, "D": 0.001}
    found = [("g0-000", ModelFamily.RESNET, resnet), ("g1-000", ModelFamily.MOBILENET, mobilenet)]
    fig = lambda_figure(found)
    panels = {ax.get_title(): ax for ax in fig.axes}
    assert set(panels) == {"resnet family", "mobilenet family"}
    for family, label, constants in (("resnet", "g0-000", resnet), ("mobilenet", "g1-000", mobilenet)):
        lines = {line.get_label(): line for line in panels[f"{family} family"].get_lines()}
        assert set(lines) == {*PRESETS, label}
        s = np.asarray(lines[label].get_xdata())
        for name in PRESETS:
            assert np.allclose(lines[name].get_ydata(), lambda_of(preset_constants(name, ModelFamily(family)), s))
        assert np.allclose(lines[label].get_ydata(), lambda_of(constants, s))
