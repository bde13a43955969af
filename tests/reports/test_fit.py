"""fit-alpha (formulas §2 tangent rule) on points from the published curve, fronts on mixed-direction planes; no Ray."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import yaml
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from tuneprune.cli import main
from tuneprune.evolution.archive import FRONT_PLANE, pareto_front
from tuneprune.reports import Report, fit_tangent, tangent
from tuneprune.reports.sections import front_section
from tuneprune.reports.tangent import DEFAULT_POLE_MARGIN, AlphaFit
from tuneprune.reports.usable import accuracy_metric
from tuneprune.search.space import load_space
from tuneprune.search.study_config import StudyConfig
from tuneprune.shared.config import ConfigError, validate
from tuneprune.shared.pareto import Plane, front_indices, hypervolume, non_dominated
from tuneprune.sparsity import alpha_for_target, resolve_alpha
from tuneprune.sparsity.theta import PUBLISHED_ALPHA_RULE
from tuneprune.tracking import RunTracker, parent_run

TARGETS = [0.90, 0.95, 0.98, 0.99, 0.995, 0.998]
GRID = np.linspace(0.90, 0.998, 400)


def published(s):
    return tangent(s, **PUBLISHED_ALPHA_RULE)


def max_error(fit) -> float:
    return float(np.abs(fit(GRID) - published(GRID)).max())


def test_exact_points_recover_the_published_curve():
    fit = fit_tangent(TARGETS, published(np.array(TARGETS)))
    assert fit.free == ("c1", "c2", "c3", "c4")
    assert max_error(fit) < 0.005
    assert fit.rmse < 1e-6


def test_noisy_points_recover_the_published_curve_within_0005():
    targets = np.linspace(0.90, 0.998, 8)
    alphas = published(targets) + np.random.default_rng(0).normal(0.0, 0.001, len(targets))
    fit = fit_tangent(targets, alphas)
    assert max_error(fit) < 0.005


@pytest.mark.parametrize(("n", "free"), [(1, ("c4",)), (2, ("c1", "c4")), (3, ("c1", "c4"))])
def test_fewer_than_four_points_keep_c2_c3_published(n, free):
    targets = np.array(TARGETS[1 : 1 + n])
    fit = fit_tangent(targets, published(targets) + 0.01)
    assert fit.free == free
    assert (fit.constants["c2"], fit.constants["c3"]) == (PUBLISHED_ALPHA_RULE["c2"], PUBLISHED_ALPHA_RULE["c3"])
    assert fit.rmse < 1e-6 if n <= 2 else fit.rmse < 0.01


@pytest.mark.parametrize(
    ("option", "value", "api"),
    [
        ("--constants", "c1,c5", {"free": ["c1", "c5"]}),
        ("--constants", "", {"free": []}),
        ("--pole-margin", "-0.01", {"pole_margin": -0.01}),
        ("--pole-margin", "0.1", {"pole_margin": 0.1}),
    ],
)
def test_fit_tangent_refuses_what_fit_alpha_refuses_in_the_same_line(option, value, api, tmp_path, capsys):
    """The Python API checks its constants and pole margin as the CLI does (it raised KeyError for c5, and fitted with
    a negative margin, poles allowed inside the range), with the CLI's message; the CLI checks before reading a source."""
    with pytest.raises(ConfigError) as refused:
        fit_tangent(TARGETS, published(np.array(TARGETS)), **api)
    assert main(["fit-alpha", str(tmp_path / "absent"), option, value]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"tuneprune fit-alpha: error: {refused.value}"
    assert "\n" not in err
    assert err.startswith(f"tuneprune fit-alpha: error: {option} = ")


def test_a_fit_with_c2_free_and_negative_is_judged_by_its_true_poles():
    """tan(-x) = -tan(x): c1, c2, c3 of the published rule negated is the same rule, with the same poles (formulas §2);
    the old code took the pole below the range for the upper one and refused a rule with no pole in range."""
    targets = np.array(TARGETS[1:])
    negated = {"c1": -0.026, "c2": -23.09, "c3": -22.08, "c4": 0.093}
    fit = AlphaFit(negated, ("c2", "c3"), targets, published(targets), DEFAULT_POLE_MARGIN)
    published_poles = AlphaFit(PUBLISHED_ALPHA_RULE, (), targets, published(targets), DEFAULT_POLE_MARGIN).poles
    assert fit.poles == pytest.approx(published_poles)
    assert fit.poles == pytest.approx((0.8805, 1.0166), abs=1e-4)
    assert min(fit.pole_gaps.values()) > 0  # both outside the range and its margin: the fit is not refused


def synthetic_trial(
    key: str, model: str, target: float, alpha: float, val_acc: float = 0.9, sparsity: float | None = None
) -> dict:
    """A complete trial entry of summary.json as a search writes it (config and final metrics included)."""
    return {
        "key": key, "name": key, "state": "COMPLETE", "grid": {"model": model, "sparsity.target": target},
        "params": {"sparsity.theta.alpha": alpha}, "values": {"val_acc": val_acc},
        "metrics": {"val_acc": val_acc, "sparsity": target if sparsity is None else sparsity},
        "config": {"model": model, "dataset": "digits",
                   "sparsity": {"target": target, "theta": {"policy": "log_density", "alpha": alpha}}},
    }  # fmt: skip


def synthetic_alpha_search(directory, name: str, models: list[str], extra: Sequence[dict] = ()) -> None:
    """A results directory whose summary.json has one usable trial per (model, target) on the published curve, plus ``extra``."""
    trials = [
        synthetic_trial(f"g{i}-{j:03d}", model, s, float(published(s)))
        for i, model in enumerate(models)
        for j, s in enumerate([0.8, *TARGETS])
    ] + list(extra)
    summary = {"name": name, "parent_run_id": "0" * 32, "tracking_uri": f"sqlite:///{directory}/absent.db",
               "objectives": {"val_acc": "max"}, "trials": trials, "best": trials}  # fmt: skip
    directory.mkdir(parents=True)
    (directory / "summary.json").write_text(json.dumps(summary))


def test_fit_alpha_cli_on_results_directories(tmp_path, capsys):
    synthetic_alpha_search(tmp_path / "runs" / "alpha_a", "alpha_a", ["resnet20x2", "mobilenet_v1"])
    synthetic_alpha_search(tmp_path / "runs" / "alpha_b", "alpha_b", ["densenet40_24"])
    out = tmp_path / "fit"
    assert (
        main(["fit-alpha", str(tmp_path / "runs" / "alpha_a"), str(tmp_path / "runs" / "alpha_b"), "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "fitted c1, c2, c3, c4 to 18 points" in printed
    assert str(out / "fit_alpha.html") in printed
    rule = yaml.safe_load((out / "alpha_rule.yaml").read_text())
    assert rule["fitted"] == ["c1", "c2", "c3", "c4"]
    assert rule["points"] == 18
    assert max_error(lambda s: tangent(s, **{k: rule[k] for k in PUBLISHED_ALPHA_RULE})) < 0.005
    for s in TARGETS[1:]:  # the rule file as the sparsity package reads it, against formulas §2's reference values
        assert resolve_alpha(f"fitted:{out / 'alpha_rule.yaml'}", s) == alpha_for_target(s)
    residuals = (out / "residuals.csv").read_text().splitlines()
    assert len(residuals) == 1 + 21  # 0.8 is listed but not fitted (the rule is 0 up to 0.90)
    html = (out / "fit_alpha.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == len(list(out.glob("*.png"))) == 1


def test_fit_alpha_counts_each_point_once_when_two_searches_share_a_name(tmp_path, capsys):
    """Two stores may each hold a search of the default name (the space file's); fitted together, each search's best
    alpha per grid point is one point, as for searches of different names."""
    synthetic_alpha_search(tmp_path / "a" / "feather_alpha", "feather_alpha", ["resnet20x2", "mobilenet_v1"])
    synthetic_alpha_search(tmp_path / "b" / "feather_alpha", "feather_alpha", ["densenet40_24"])
    out = tmp_path / "fit"
    sources = [str(tmp_path / "a" / "feather_alpha"), str(tmp_path / "b" / "feather_alpha")]
    assert main(["fit-alpha", *sources, "--out", str(out)]) == 0
    assert "fitted c1, c2, c3, c4 to 18 points" in capsys.readouterr().out  # 3 models x 6 targets from 0.90
    rows = list(csv.DictReader((out / "residuals.csv").open()))
    assert len(rows) == 3 * 7  # 0.8 listed, not fitted
    assert len({(r["group"], r["target"]) for r in rows}) == len(rows)


def test_fit_alpha_refuses_a_search_given_twice(tmp_path, capsys):
    """Its points would count twice: one line, exit 2, before anything is written."""
    synthetic_alpha_search(tmp_path / "runs" / "alpha_a", "alpha_a", ["resnet20x2"])
    source = str(tmp_path / "runs" / "alpha_a")
    assert main(["fit-alpha", source, f"{source}/", "--out", str(tmp_path / "fit")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert f"source = '{source}/': the search '{source}' names already" in err
    assert not list((tmp_path / "fit").glob("*"))  # nothing written


def study_results(tmp_path, methods: dict[str, dict], targets: Sequence[float], accuracy: Callable[[dict], float]):
    """The results directory of a study of ``methods`` (2 seeds), each trial's val_acc ``accuracy(grid)``; its resolved
    space (the methods) logged to a real MLflow store, as ``tuneprune study`` logs it."""
    document = validate(StudyConfig, {
        "base": {"model": "small_cnn", "dataset": "digits", "epochs": 1}, "methods": methods, "targets": list(targets),
        "seeds": [0, 1],
    }).space_document("study")  # fmt: skip
    space = load_space(document)
    tracker = RunTracker(f"sqlite:///{tmp_path}/mlruns.db")
    with parent_run(tracker, "study", "search", resume=False) as parent_id:
        tracker.log_text(parent_id, json.dumps(space.model_dump(mode="json")), "resolved_space.json")
    trials = [
        {"key": f"g{i}-000", "name": "", "state": "COMPLETE", "grid": grid, "params": {}, "values": {"val_acc": accuracy(grid)},
         "metrics": {"val_acc": accuracy(grid), "sparsity": grid["sparsity.target"]},
         "config": space.resolve(grid, {}).model_dump(mode="json")}
        for i, grid in enumerate(space.grid_points())
    ]  # fmt: skip
    directory = tmp_path / "runs" / "study"
    directory.mkdir(parents=True)
    summary = {"name": "study", "parent_run_id": parent_id, "tracking_uri": tracker.tracking_uri,
               "objectives": {"val_acc": "max"}, "trials": trials, "best": trials}  # fmt: skip
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


def test_fit_alpha_on_a_study_takes_each_targets_best_method_alpha_averaged_over_seeds(tmp_path, capsys):
    """A study whose methods set alpha (log_density theta): per target the alpha of the best mean over seeds is fitted."""
    alphas = {f"alpha{i}": float(published(s)) for i, s in enumerate(TARGETS)}
    methods = {m: {"sparsity.theta.policy": "log_density", "sparsity.theta.alpha": a} for m, a in alphas.items()}

    def accuracy(grid: dict) -> float:
        s, i = grid["sparsity.target"], list(alphas).index(grid["method"]) if grid["method"] in alphas else -1
        if grid["seed"] == 1 and i == (TARGETS.index(s) + 1) % len(TARGETS):
            return 0.95  # seed 1 prefers the next method's alpha, but the mean over seeds prefers the right one
        return 0.9 if grid["method"] in alphas and alphas[grid["method"]] == float(published(s)) else 0.5

    directory = study_results(tmp_path, {**methods, "feather": {"sparsity.theta.policy": "feather"}}, TARGETS, accuracy)
    out = tmp_path / "fit"
    assert main(["fit-alpha", str(directory), "--out", str(out)]) == 0
    assert f"fitted c1, c2, c3, c4 to {len(TARGETS)} points" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "residuals.csv").open()))
    assert [
        float(r["target"]) for r in rows
    ] == TARGETS  # one point per target: the method, model and seed grids are not groups
    for row in rows:
        assert float(row["alpha"]) == float(published(float(row["target"])))
        assert len(row["trial"].split(",")) == 2  # both seeds of the chosen alpha


def test_fit_alpha_on_a_study_leaves_out_a_method_whose_alpha_the_rule_derives(tmp_path, capsys):
    """docs/studies.md: methods without an alpha of their own are left out. A log_density method that does not set alpha
    runs 'auto', the published rule's value at each target: fitted, those values return the published rule, whatever
    the study measured."""
    methods: dict[str, dict] = {
        "global_theta": {"sparsity.theta.policy": "log_density"},  # alpha 'auto': 0.09, 0.12, 0.13
        "alpha_05": {"sparsity.theta.policy": "log_density", "sparsity.theta.alpha": 0.05},
    }
    best_auto = study_results(
        tmp_path, methods, [0.95, 0.98, 0.99], lambda g: 0.9 if g["method"] == "global_theta" else 0.5
    )
    out = tmp_path / "fit"
    assert main(["fit-alpha", str(best_auto), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "residuals.csv").open()))
    assert [float(r["alpha"]) for r in rows] == [0.05, 0.05, 0.05]  # alpha_05 at each target, global_theta never
    capsys.readouterr()
    only_auto = study_results(tmp_path / "auto", {"global_theta": methods["global_theta"]}, [0.95, 0.99], lambda g: 0.9)
    assert main(["fit-alpha", str(only_auto)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "no usable trial that searched sparsity.theta.alpha" in err


def test_fit_alpha_on_a_study_without_its_store_exits_2_and_creates_none(tmp_path, capsys):
    """A study's methods are in its MLflow store: a results directory moved without it is refused in one line."""
    directory = study_results(tmp_path, {"alpha_05": {"sparsity.theta.policy": "log_density", "sparsity.theta.alpha": 0.05}},
                              [0.95], lambda g: 0.9)  # fmt: skip
    summary = json.loads((directory / "summary.json").read_text())
    absent = tmp_path / "moved" / "mlruns.db"
    (directory / "summary.json").write_text(json.dumps({**summary, "tracking_uri": f"sqlite:///{absent}"}))
    assert main(["fit-alpha", str(directory)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "no MLflow store at" in err
    assert not absent.exists()


def test_fit_alpha_without_alpha_points_exits_2(tmp_path, capsys):
    directory = tmp_path / "runs" / "plain"
    synthetic_alpha_search(directory, "plain", [])
    assert main(["fit-alpha", str(directory)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert repr(str(directory)) in err


@pytest.mark.parametrize("command", ["fit-alpha", "fit-scheduler"])
@pytest.mark.parametrize("out", [True, False], ids=["out", "default"])
def test_a_refused_fit_creates_no_output_folder(command, out, tmp_path, capsys):
    """A source the fit refuses (here no alpha point, no MLflow store) exits 2 in one line and leaves neither ``--out``
    nor the default ``RESULTS/fit-...`` folder behind (both were made before the refusal)."""
    directory = tmp_path / "runs" / "plain"
    synthetic_alpha_search(directory, "plain", [])
    assert main([command, str(directory), *(["--out", str(tmp_path / "fit")] if out else [])]) == 2
    assert "\n" not in capsys.readouterr().err.strip()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    assert sorted(p.name for p in directory.iterdir()) == ["summary.json"]


def test_fit_alpha_judges_chance_by_the_accuracy_objective_the_report_uses(tmp_path, capsys):
    """Objectives (mask stability, test_acc): a trial is near chance by its test_acc, the accuracy of the search's
    fronts (``accuracy_metric``), not by val_acc, which the search did not optimise."""
    trials = []
    for j, s in enumerate(TARGETS):
        trial = synthetic_trial(f"g0-{j:03d}", "resnet20", s, float(published(s)), val_acc=0.12)
        trial["values"] = {"mean_mask_stability": 0.9 - j / 100, "test_acc": 0.9}
        trial["metrics"]["test_acc"] = 0.9
        trials.append(trial)
    directory = tmp_path / "runs" / "stable"
    directory.mkdir(parents=True)
    summary: dict[str, Any] = {"name": "stable", "parent_run_id": "0" * 32, "tracking_uri": f"sqlite:///{directory}/absent.db",
               "objectives": {"mean_mask_stability": "max", "test_acc": "max"}, "trials": trials, "best": trials}  # fmt: skip
    (directory / "summary.json").write_text(json.dumps(summary))
    assert accuracy_metric(summary["objectives"]) == "test_acc"
    assert main(["fit-alpha", str(directory), "--out", str(tmp_path / "fit")]) == 0
    printed = capsys.readouterr().out
    assert "near chance" not in printed
    assert f"fitted c1, c2, c3, c4 to {len(TARGETS)} points" in printed


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
    assert hypervolume(points[front], plane, reference) == pytest.approx(
        HV(ref_point=np.array([reference[0], 0.0]))(minimised)
    )


def test_excluded_trials_are_printed_plotted_and_never_fitted(tmp_path, capsys):
    """Near-chance and short-of-target trials with wild alphas would wreck the fit; they are left out with the reason."""
    extra = [
        synthetic_trial(
            "g9-001", "resnet20", 0.99, 0.9, val_acc=0.95, sparsity=0.76
        ),  # more accurate, never reached 0.99
        synthetic_trial("g9-002", "resnet20", 0.98, -0.5, val_acc=0.146),  # near chance
        synthetic_trial("g9-003", "resnet20", 0.995, 2.0, val_acc=0.95, sparsity=0.9935),
    ]
    directory = tmp_path / "runs" / "alpha_x"
    synthetic_alpha_search(directory, "alpha_x", ["resnet20"], extra)
    assert main(["fit-alpha", str(directory), "--out", str(tmp_path / "fit")]) == 0
    printed = capsys.readouterr().out
    assert (
        "excluded alpha_x g9-001 (target 0.99, alpha 0.9): target not reached: sparsity 0.7600 < 0.99 - 0.001"
        in printed
    )
    assert (
        "excluded alpha_x g9-002 (target 0.98, alpha -0.5): near chance: val_acc 0.1460 < chance 0.1 + 0.1" in printed
    )
    assert "excluded alpha_x g9-003" in printed
    rule = yaml.safe_load((tmp_path / "fit" / "alpha_rule.yaml").read_text())
    assert rule["points"] == 6
    assert rule["rmse"] < 1e-6
    assert rule["r2"] == pytest.approx(1.0)
    excluded = (tmp_path / "fit" / "excluded.csv").read_text().splitlines()
    assert len(excluded) == 1 + 3


def test_a_rerun_into_the_same_folder_lists_only_its_own_excluded_trials(tmp_path, capsys):
    """excluded.csv lists the trials this run left out: a rerun with looser rules that leaves none out does not keep
    the former run's list beside its fit (it did: three trials shown as excluded that the new rule had fitted)."""
    extra = [
        synthetic_trial("g9-001", "resnet20", 0.99, 0.2, val_acc=0.95, sparsity=0.76),
        synthetic_trial("g9-002", "resnet20", 0.98, 0.1, val_acc=0.146),
    ]
    directory, out = tmp_path / "runs" / "alpha_x", tmp_path / "fit"
    synthetic_alpha_search(directory, "alpha_x", ["resnet20"], extra)
    assert main(["fit-alpha", str(directory), "--out", str(out)]) == 0
    assert len((out / "excluded.csv").read_text().splitlines()) == 1 + 2
    capsys.readouterr()
    loose = ["--sparsity-tolerance", "0.5", "--chance-margin", "0"]
    assert main(["fit-alpha", str(directory), "--out", str(out), *loose]) == 0
    assert "  excluded " not in capsys.readouterr().out
    assert not (out / "excluded.csv").exists()


def test_a_margin_the_published_poles_cannot_keep_names_the_option_and_its_allowed_range(tmp_path, capsys):
    """With fewer than 4 distinct targets c2 and c3 keep their published values, and so the poles 0.8805 and 1.0166:
    a --pole-margin past 0.90 - 0.88051 was refused with "fit all four constants", which 2 targets cannot. The line
    names the option and the margins allowed, and the largest one it names is accepted."""
    targets = [0.95, 0.98]
    with pytest.raises(ConfigError) as refused:
        fit_tangent(targets, published(np.array(targets)), pole_margin=0.05)
    assert str(refused.value) == (
        "--pole-margin = 0.05: with c2 and c3 published (c1, c4 fitted) its poles 0.8805 and 1.0166 lie within it of "
        "the range 0.9..0.98; allowed: [0, 0.0194]"
    )
    fit = fit_tangent(targets, published(np.array(targets)), pole_margin=0.0194)
    assert fit.free == ("c1", "c4")


def test_fit_alpha_leaves_out_the_alphas_a_theta_rule_without_one_drew(tmp_path, capsys):
    """alpha searched beside a grid over the theta policy: a feather trial drew an alpha it never used (formulas §2:
    only log_density has one). Its alphas were fitted, and drawn in the report, as the best of a group of their own."""
    feather = []
    for j, s in enumerate(TARGETS):
        trial = synthetic_trial(f"g1-{j:03d}", "resnet20", s, 0.3, val_acc=0.95)
        trial["grid"]["sparsity.theta.policy"] = "feather"
        trial["config"]["sparsity"]["theta"]["policy"] = "feather"
        feather.append(trial)
    directory = tmp_path / "runs" / "alpha_policy"
    synthetic_alpha_search(directory, "alpha_policy", ["resnet20"], feather)
    assert main(["fit-alpha", str(directory), "--out", str(tmp_path / "fit")]) == 0
    fitted = list(csv.DictReader((tmp_path / "fit" / "residuals.csv").open()))
    assert {row["trial"] for row in fitted} == {f"g0-{j:03d}" for j in range(7)}  # 0.8 and the six targets
    rule = yaml.safe_load((tmp_path / "fit" / "alpha_rule.yaml").read_text())
    assert (rule["points"], rule["rmse"] < 1e-6) == (6, True)


def test_fit_keeps_the_poles_outside_the_range_with_its_margin():
    """Jagged points that an unconstrained fit explains with a pole between 0.99 and 0.995."""
    targets = [0.90, 0.95, 0.98, 0.99, 0.993, 0.995]
    alphas = [0.07, 0.09, 0.12, 0.567, -0.253, -0.021]
    fit = fit_tangent(targets, alphas, pole_margin=0.005)
    lower, upper = fit.poles
    assert lower <= 0.90 - 0.005 + 1e-9
    assert upper >= 0.995 + 0.005 - 1e-9
    s = np.linspace(0.90, 0.995, 2000)
    assert np.all(np.isfinite(fit(s)))
    assert np.all(np.diff(fit(s)) * np.sign(fit.constants["c1"]) > 0)  # one branch: monotone
    assert len(fit.residuals) == 6
    assert fit.r2 is not None
    assert fit.r2 < 1.0
    published_rmse = np.sqrt(np.mean((published(np.array(targets)) - np.array(alphas)) ** 2))
    assert fit.rule()["published_rmse"] == pytest.approx(published_rmse)


def test_too_few_usable_points_exit_2_with_one_line(tmp_path, capsys):
    directory = tmp_path / "runs" / "few"
    synthetic_alpha_search(
        directory,
        "few",
        [],
        [synthetic_trial("g0-000", "resnet20", 0.95, 0.09), synthetic_trial("g1-000", "resnet20", 0.99, 0.13)],
    )
    assert main(["fit-alpha", str(directory), "--constants", "c1,c2,c3,c4", "--out", str(tmp_path / "fit")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "2 usable distinct targets for 4 constants" in err
    assert not (tmp_path / "fit" / "alpha_rule.yaml").exists()


def test_console_front_and_report_front_share_one_tie_rule(tmp_path):
    """Two individuals on the same point are both non-dominated: the evolve console and the report list both."""
    rows = [
        {"generation": 0, "index": i, "status": "ok", "sigma": 0.001, "rate": r, "accuracy": a, "sparsity": s}
        for i, (r, a, s) in enumerate(
            [(0.5, 0.9, 0.5), (0.7, 0.8, 0.7), (0.7, 0.8, 0.7), (0.6, 0.7, 0.6), (0.9, 0.3, 0.9)]
        )
    ]
    console = [(r["generation"], r["index"]) for r in pareto_front(rows)]
    assert console == [(0, 0), (0, 1), (0, 2), (0, 4)]  # the tie (0, 1) = (0, 2) kept, in evaluation order
    front_section(Report("t", tmp_path), rows, FRONT_PLANE)
    with open(tmp_path / "front_accuracy_vs_sparsity_front.csv") as fh:
        report = [(int(r["generation"]), int(r["index"])) for r in csv.DictReader(fh)]
    assert report == console
    points = np.array([[r["sparsity"], r["accuracy"]] for r in rows])
    assert front_indices(points, FRONT_PLANE) == non_dominated(points, ("max", "max")) == [0, 1, 2, 4]


def test_constants_fixed_by_the_option_are_not_blamed_on_too_few_targets(tmp_path, capsys):
    """Six distinct targets, --constants c4: the old code printed and wrote "fewer than 4 distinct targets"."""
    synthetic_alpha_search(tmp_path / "runs" / "six", "six", ["resnet20"])
    out = tmp_path / "fit"
    assert main(["fit-alpha", str(tmp_path / "runs" / "six"), "--constants", "c4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fitted c4 to 6 points" in printed
    assert "the others are the published constants (--constants c4)" in printed
    assert "fewer than 4" not in printed.lower()
    assert "fewer than 4" not in (out / "fit_alpha.html").read_text().lower()
