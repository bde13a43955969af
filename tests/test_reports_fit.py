"""fit-alpha (SPEC 2 tangent rule) on points from the published curve, fronts on mixed-direction planes; no Ray."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from tuneprune.cli import main
from tuneprune.reports import fit_tangent, tangent
from tuneprune.reports.pareto import Plane, front_indices, hypervolume
from tuneprune.sparsity import alpha_for_target, resolve_alpha
from tuneprune.sparsity.theta import PUBLISHED_ALPHA_RULE

TARGETS = [0.90, 0.95, 0.98, 0.99, 0.995, 0.998]
GRID = np.linspace(0.90, 0.998, 400)


def published(s):
    return tangent(s, **PUBLISHED_ALPHA_RULE)


def max_error(fit) -> float:
    return float(np.abs(fit(GRID) - published(GRID)).max())


def test_exact_points_recover_the_published_curve():
    fit = fit_tangent(TARGETS, published(np.array(TARGETS)))
    assert fit.free == ("c1", "c2", "c3", "c4")
    assert max_error(fit) < 0.005 and fit.rmse < 1e-6


def test_noisy_points_recover_the_published_curve_within_0005():
    targets = np.linspace(0.90, 0.998, 8)
    alphas = published(targets) + np.random.default_rng(0).normal(0.0, 0.001, len(targets))
    fit = fit_tangent(targets, alphas)
    assert max_error(fit) < 0.005


@pytest.mark.parametrize("n, free", [(1, ("c4",)), (2, ("c1", "c4")), (3, ("c1", "c4"))])
def test_fewer_than_four_points_keep_c2_c3_published(n, free):
    targets = np.array(TARGETS[1 : 1 + n])
    fit = fit_tangent(targets, published(targets) + 0.01)
    assert fit.free == free
    assert (fit.constants["c2"], fit.constants["c3"]) == (PUBLISHED_ALPHA_RULE["c2"], PUBLISHED_ALPHA_RULE["c3"])
    assert fit.rmse < 1e-6 if n <= 2 else fit.rmse < 0.01


def synthetic_alpha_search(directory, name: str, models: list[str]) -> None:
    """A results directory whose summary.json has the best alpha per (model, target) on the published curve."""
    best = [
        {
            "key": f"g{i}-{j:03d}", "grid": {"model": model, "sparsity.target": s}, "params": {"sparsity.theta.alpha": float(published(s))},
            "values": {"val_acc": 0.9}, "config": {"model": model, "sparsity": {"target": s, "theta": {"alpha": float(published(s))}}},
        }  # fmt: skip
        for i, model in enumerate(models)
        for j, s in enumerate([0.8, *TARGETS])
    ]
    summary = {"name": name, "parent_run_id": "0" * 32, "tracking_uri": f"sqlite:///{directory}/absent.db",
               "objectives": {"val_acc": "max"}, "trials": [], "best": best}  # fmt: skip
    directory.mkdir(parents=True)
    (directory / "summary.json").write_text(json.dumps(summary))


def test_fit_alpha_cli_on_results_directories(tmp_path, capsys):
    synthetic_alpha_search(tmp_path / "runs" / "alpha_a", "alpha_a", ["resnet20x2", "mobilenet_v1"])
    synthetic_alpha_search(tmp_path / "runs" / "alpha_b", "alpha_b", ["densenet40_24"])
    out = tmp_path / "fit"
    assert main(["fit-alpha", str(tmp_path / "runs" / "alpha_a"), str(tmp_path / "runs" / "alpha_b"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fitted c1, c2, c3, c4 to 18 points" in printed and str(out / "fit_alpha.html") in printed
    rule = yaml.safe_load((out / "alpha_rule.yaml").read_text())
    assert rule["fitted"] == ["c1", "c2", "c3", "c4"] and rule["points"] == 18
    assert max_error(lambda s: tangent(s, **{k: rule[k] for k in PUBLISHED_ALPHA_RULE})) < 0.005
    for s in TARGETS[1:]:  # the rule file as the sparsity package reads it, against SPEC 2's reference values
        assert resolve_alpha(f"fitted:{out / 'alpha_rule.yaml'}", s) == alpha_for_target(s)
    residuals = (out / "residuals.csv").read_text().splitlines()
    assert len(residuals) == 1 + 21  # 0.8 is listed but not fitted (the rule is 0 up to 0.90)
    html = (out / "fit_alpha.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == len(list(out.glob("*.png"))) == 1


def test_fit_alpha_without_alpha_points_exits_2(tmp_path, capsys):
    directory = tmp_path / "runs" / "plain"
    synthetic_alpha_search(directory, "plain", [])
    assert main(["fit-alpha", str(directory)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and repr(str(directory)) in err


def test_fronts_and_hypervolume_with_a_minimised_metric():
    rng = np.random.default_rng(1)
    points = rng.uniform(0.0, 1.0, (30, 2))
    plane = Plane("val_loss", "val_acc", "min", "max")
    minimised = np.column_stack([points[:, 0], -points[:, 1]])
    expected = set(NonDominatedSorting().do(minimised, only_non_dominated_front=True).tolist())
    front = front_indices(points, plane)
    assert set(front) == expected
    reference = plane.reference(points)
    assert reference == (points[:, 0].max(), 0.0)
    assert hypervolume(points[front], plane, reference) == pytest.approx(HV(ref_point=np.array([reference[0], 0.0]))(minimised))
