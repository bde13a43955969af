"""Sections of a search report on hand-made summaries, without Ray: best.yaml's tie rule, the trials counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tuneprune.cli import main
from tuneprune.reports import Report
from tuneprune.reports.search import best_config
from tuneprune.reports.source import Source
from tuneprune.reports.trials import SearchData
from tuneprune.search.space import SearchSpace, load_space
from tuneprune.shared.config import validate
from tuneprune.tracking import RunTracker, parent_run


@pytest.mark.parametrize("direction", ["max", "min"])
def test_a_tie_for_best_yaml_goes_to_the_lowest_trial_key(direction, tmp_path):
    """Of equal values the trial of the lowest key wins, whatever order summary.json lists the grid points' best trials
    in (a grid point added before the others on --resume keeps its new index, g2, and is listed first): best.yaml
    was the first listed."""
    best = [
        {
            "key": key,
            "grid": {},
            "params": {},
            "values": {"val_loss": 0.25},
            "config": {"model": "small_cnn", "seed": i},
        }
        for i, key in enumerate(["g2-000", "g10-000", "g0-001"])
    ]
    summary = {
        "name": "s",
        "parent_run_id": "0" * 32,
        "objectives": {"val_loss": direction},
        "trials": [],
        "best": best,
    }
    source = Source("s", "search", summary, f"sqlite:///{tmp_path / 'absent.db'}", tmp_path)
    space = validate(SearchSpace, {"objectives": {"val_loss": direction}, "grid": {"seed": [0, 1, 2]}})
    report = Report("s", tmp_path / "report")
    best_config(report, SearchData(source, space, []))
    assert yaml.safe_load((tmp_path / "report" / "best.yaml").read_text())["seed"] == 2
    assert "Trial g0-001 (val_loss = 0.2500)" in "".join(report.blocks)


def searched(tmp_path, document: dict[str, Any], trials: list[dict[str, Any]]) -> Path:
    """The results directory of a search of ``document`` that ended with ``trials``: its resolved space logged to a
    real MLflow store, as the search logs it, and its summary.json (no Optuna storage: importances are noted)."""
    space = load_space(document)
    tracker = RunTracker(f"sqlite:///{tmp_path}/mlruns.db")
    with parent_run(tracker, document["name"], "search", resume=False) as parent_id:
        tracker.log_text(parent_id, json.dumps(space.model_dump(mode="json")), "resolved_space.json")
    for t in trials:
        t["config"] = t["config"] and space.resolve(t["grid"], t["params"]).model_dump(mode="json")
    directory = tmp_path / "runs" / document["name"]
    directory.mkdir(parents=True)
    summary = {"name": document["name"], "parent_run_id": parent_id, "tracking_uri": tracker.tracking_uri,
               "storage_url": f"sqlite:///{tmp_path}/absent.db", "objectives": document["objectives"],
               "trials": trials, "best": [t for t in trials if t["state"] == "COMPLETE"]}  # fmt: skip
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


def trial(
    key: str, grid: dict[str, Any], params: dict[str, Any], state: str = "COMPLETE", refused: bool = False
) -> dict[str, Any]:
    """A trial entry of summary.json; its config (resolved by :func:`searched`; None: refused, never run) and metrics."""
    done = state == "COMPLETE"
    return {"key": key, "name": key, "state": state, "grid": grid, "params": params,
            "values": {"val_acc": 0.9} if done else {}, "metrics": {"val_acc": 0.9, "sparsity": 0.9} if done else {},
            "config": None if refused else True}  # fmt: skip


def test_the_report_counts_the_trials_the_run_config_refused(tmp_path):
    """A trial whose searched values the run config refuses together fails without running (config None in
    summary.json); the search prints it among its failed trials, and the report counts it too: it said "Trials: 1
    complete", one failed trial gone."""
    document = {
        "name": "refuse", "base": {"model": "small_cnn", "dataset": "digits", "epochs": 1,
                                   "sparsity": {"target": 0.9, "drop": {"rho": 0.1, "mode": "layer"}}},
        "params": {"sparsity.threshold": {"type": "categorical", "choices": ["global", "layer"]},
                   "sparsity.drop.mode": {"type": "categorical", "choices": ["global", "layer"]}},
        "objectives": {"val_acc": "max"},
    }  # fmt: skip
    ran = {"sparsity.threshold": "global", "sparsity.drop.mode": "global"}
    refused = {"sparsity.threshold": "layer", "sparsity.drop.mode": "global"}
    directory = searched(
        tmp_path, document, [trial("g0-000", {}, ran), trial("g0-001", {}, refused, "FAIL", refused=True)]
    )
    assert main(["report", str(directory)]) == 0
    assert (
        "Trials: 1 complete, 1 fail. The fronts use the 1 complete trials"
        in (directory / "report" / "report.html").read_text()
    )


def test_the_report_of_a_search_with_methods_has_no_study_section(tmp_path, capsys):
    """A search's grid may sweep ``methods`` overlays (docs/searches.md); only a study logs study.yaml and has a table
    of methods x targets x seeds. The report of such a search exited 2 on the missing study.yaml, half written."""
    document = {
        "name": "methods", "base": {"model": "small_cnn", "dataset": "digits", "epochs": 1},
        "methods": {"feather": {"sparsity.theta.policy": "feather"}, "slow": {"lr": 0.01}},
        "params": {"sparsity.target": {"type": "float", "low": 0.5, "high": 0.9}},
        "grid": {"method": ["feather", "slow"]}, "objectives": {"val_acc": "max"},
    }  # fmt: skip
    trials = [trial(f"g{i}-000", {"method": m}, {"sparsity.target": 0.9}) for i, m in enumerate(["feather", "slow"])]
    directory = searched(tmp_path, document, trials)
    assert main(["report", str(directory)]) == 0, capsys.readouterr().err
    html = (directory / "report" / "report.html").read_text()
    assert "Best configuration" in html
    assert "Study:" not in html


def test_the_report_of_a_search_whose_trials_all_failed_draws_no_empty_plot(tmp_path, recwarn):
    """No trial completed: each section says so. The plot of accuracy against the searched parameters was drawn
    empty, and matplotlib's "No artists with labels found to put in legend" warning went to stderr."""
    document = {
        "name": "failed", "base": {"model": "small_cnn", "dataset": "digits", "epochs": 1},
        "params": {"sparsity.theta.alpha": {"type": "float", "low": 0.0, "high": 0.3}},
        "objectives": {"val_acc": "max"},
    }  # fmt: skip
    failed = [trial(f"g0-00{i}", {}, {"sparsity.theta.alpha": 0.1 * i}, "FAIL") for i in range(2)]
    directory = searched(tmp_path, document, failed)
    assert main(["report", str(directory)]) == 0
    assert [str(w.message) for w in recwarn if issubclass(w.category, UserWarning)] == []
    assert not (directory / "report" / "accuracy_per_param.png").exists()
    assert (
        'val_acc against each searched parameter</h2>\n<p class="note">No trial completed.</p>'
        in (directory / "report" / "report.html").read_text()
    )


def test_a_name_is_the_working_directorys_search_before_the_index_latest_of_that_name(tmp_path, monkeypatch):
    """Two directories each ran a search named ``digits_demo`` (the README's): ``tuneprune report digits_demo`` in the
    first reported the second's, the latest the index holds of that name. A name's finished results in ``./runs``
    come first; from a directory without them, the index's latest entry, as before."""
    from tuneprune.reports import resolve_source
    from tuneprune.tracking.index import index_results

    document = {"name": "digits_demo", "base": {"model": "small_cnn", "dataset": "digits", "epochs": 1},
                "params": {"lr": {"type": "float", "low": 0.01, "high": 0.1}}, "objectives": {"val_acc": "max"}}  # fmt: skip
    results = {}
    for place in ("first", "second"):
        (tmp_path / place).mkdir()
        results[place] = searched(tmp_path / place, document, [trial("g0-000", {}, {"lr": 0.05})])
        summary = json.loads((results[place] / "summary.json").read_text())
        index_results("digits_demo", "search", results[place], summary["tracking_uri"], summary["parent_run_id"])
    monkeypatch.chdir(tmp_path / "first")
    assert resolve_source("digits_demo").results_dir == results["first"].resolve()
    monkeypatch.chdir(tmp_path)
    assert resolve_source("digits_demo").results_dir == results["second"].resolve()


def test_the_report_of_a_grid_search_says_it_searched_nothing(tmp_path):
    """A grid-only search (a study's) was introduced as 'Searched: .'."""
    document = {"name": "grid", "base": {"model": "small_cnn", "dataset": "digits", "epochs": 1},
                "params": {}, "grid": {"seed": [0]}, "objectives": {"val_acc": "max"}}  # fmt: skip
    directory = searched(tmp_path, document, [trial("g0-000", {"seed": 0}, {})])
    assert main(["report", str(directory)]) == 0
    html = (directory / "report" / "report.html").read_text()
    assert "Searched: nothing (a grid). Grid: seed in [0]." in html
