"""``tuneprune study``: the table's statistics, and a real study (Ray, Optuna, MLflow) killed and resumed."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tuneprune.reports.study_table import BEST_MARK, study_table
from tuneprune.search.studies import study_names
from tuneprune.search.study_config import StudyConfig
from tuneprune.shared.config import validate
from tuneprune.tracking import TAG_KIND, TAG_TRIAL

METHODS = {"feather": {"sparsity.theta.policy": "feather"}, "slow": {"lr": 0.01}}


def trials_of(values: dict[tuple[str, float], list[float]]) -> list[dict]:
    """Search trials (grid, state, metrics) with the given test accuracies (fractions), seeds 0, 1, ..."""
    return [
        {"grid": {"method": m, "sparsity.target": t, "seed": s}, "state": "COMPLETE", "metrics": {"test_acc": v}}
        for (m, t), vs in values.items() for s, v in enumerate(vs)
    ]  # fmt: skip


def test_table_means_stds_marks_and_published_difference():
    study = validate(StudyConfig, {
        "methods": METHODS, "targets": [0.9, 0.99], "seeds": [0, 1, 2, 3], "published": {"feather": {0.9: 80.0}}, "level": 0.05,
    })  # fmt: skip
    values = {
        ("feather", 0.9): [0.80, 0.81, 0.79, 0.80], ("slow", 0.9): [0.60, 0.61, 0.59, 0.60],  # far apart: significant
        ("feather", 0.99): [0.50, 0.60, 0.40, 0.55], ("slow", 0.99): [0.52, 0.58, 0.45, 0.50],  # overlapping: not
    }  # fmt: skip
    trials = trials_of(values)
    trials.append({"grid": {"method": "slow", "sparsity.target": 0.99, "seed": 4}, "state": "FAIL", "metrics": {}})
    table = study_table(study, trials)
    for (method, target), vs in values.items():
        cell = table.cells[(None, method, target)]
        assert cell.mean == pytest.approx(100 * np.mean(vs))
        assert cell.std == pytest.approx(100 * np.std(vs, ddof=1))
    feather90, slow90 = table.cells[(None, "feather", 0.9)], table.cells[(None, "slow", 0.9)]
    assert feather90.best
    assert not slow90.best
    assert slow90.significant
    assert slow90.p_value is not None
    assert slow90.p_value < 0.05
    assert feather90.p_value is None  # the baseline is not tested against itself
    slow99 = table.cells[(None, "slow", 0.99)]
    assert not slow99.significant
    assert slow99.p_value is not None
    assert slow99.p_value > 0.05
    assert slow99.missing == 1
    assert feather90.difference == pytest.approx(100 * np.mean(values[("feather", 0.9)]) - 80.0)
    assert table.header() == ["method", "90 %", "90 % published", "90 % Δ", "99 %", "99 % published", "99 % Δ"]
    rows = table.text_rows()
    assert rows[0][1].endswith("*")
    assert rows[1][1].endswith("†")
    assert rows[0][2] == "80.00"
    assert "1 of 2 comparisons differ" in table.legend()
    assert "over 4 seeds;" in table.legend()  # every cell has its 4 (the failed 5th seed is not one of them)
    del trials[0]  # feather at 0.9, seed 0
    assert (
        "over 4 seeds (1 of 4 cells over fewer: the seeds column of study.csv);" in study_table(study, trials).legend()
    )
    assert "Welch's t-test" in table.legend()
    assert f"**{rows[0][1]}**" in table.markdown()


def welch_p(a: list[float], b: list[float]) -> float:
    """Welch's two-sided p-value written out (formulas §11), for comparison with the table's."""
    from scipy.stats import t

    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(2 * t.sf(abs(np.mean(a) - np.mean(b)) / np.sqrt(va + vb), df))


def test_no_test_when_the_seeds_of_both_methods_have_no_variance():
    """formulas §11: no Welch test when both variances are 0, e.g. two methods whose every seed collapsed to one class
    (MNIST's '1' is 11.35 % of the test set, its '0' 9.80 %); their seeds' spread separates nothing."""
    study = validate(StudyConfig, {"methods": METHODS, "targets": [0.99, 0.998], "seeds": [0, 1, 2]})
    values = {
        ("feather", 0.99): [0.1135, 0.1135, 0.1135], ("slow", 0.99): [0.0980, 0.0980, 0.0980],
        # 40 of 360 test images in every seed: the mean of three 11.11...% rounds, a float variance of 5e-30, not 0
        ("feather", 0.998): [40 / 360] * 3, ("slow", 0.998): [0.1] * 3,
    }  # fmt: skip
    table = study_table(study, trials_of(values))
    for target in (0.99, 0.998):
        cell = table.cells[(None, "slow", target)]
        assert cell.p_value is None
        assert not cell.significant
    assert "0 of 0 comparisons differ" in table.legend()


def test_the_std_of_seeds_that_all_ended_at_one_value_is_zero():
    """40 of 360 test images in every seed: numpy's std of three equal floats is 2e-15, which study.csv printed; the
    seeds do not vary (StudyCell.varies), so the std is exactly 0, in the CSV as in the table."""
    study = validate(StudyConfig, {"methods": METHODS, "targets": [0.998], "seeds": [0, 1, 2]})
    table = study_table(study, trials_of({("feather", 0.998): [40 / 360] * 3, ("slow", 0.998): [0.1, 0.2, 0.1]}))
    stds = {row["method"]: row["std"] for row in table.records()}
    assert stds["feather"] == 0.0
    assert stds["slow"] > 0


def test_p_values_are_welchs():
    study = validate(StudyConfig, {"methods": METHODS, "targets": [0.9], "seeds": [0, 1, 2]})
    values = {("feather", 0.9): [0.80, 0.80, 0.80], ("slow", 0.9): [0.70, 0.74, 0.71]}  # one side without variance
    cell = study_table(study, trials_of(values)).cells[(None, "slow", 0.9)]
    assert cell.p_value == pytest.approx(welch_p([70.0, 74.0, 71.0], [80.0, 80.0, 80.0]))
    assert cell.significant


def test_equal_means_are_all_marked_best_whatever_the_order_of_the_seeds():
    """formulas §11: the best of a column is the largest mean, ties all marked. Accuracies are counts of test images;
    two methods with the same counts in another seed order (or the same total count) have the same mean."""
    study = validate(StudyConfig, {"methods": METHODS, "targets": [0.9], "seeds": [0, 1, 2]})
    counts = {"feather": [121, 174, 155], "slow": [155, 121, 174]}
    assert sum(counts["feather"]) == sum(counts["slow"])  # the means are equal: a tie
    table = study_table(study, trials_of({(m, 0.9): [c / 360 for c in cs] for m, cs in counts.items()}))
    assert all(table.cells[(None, m, 0.9)].best for m in counts)
    assert all(row[1].endswith(BEST_MARK) for row in table.text_rows())


def test_published_with_models_needs_a_known_model():
    from tuneprune.shared.config import ConfigError

    with pytest.raises(ConfigError, match="unknown model 'vgg16'"):
        validate(StudyConfig, {
            "methods": METHODS, "targets": [0.9], "seeds": [0], "models": ["small_cnn"], "published": {"vgg16": {"feather": {0.9: 1.0}}},
        })  # fmt: skip


@pytest.mark.parametrize("value", [True, False])
def test_a_published_accuracy_must_be_a_number_not_a_yes_or_no(value):
    """YAML reads yes/no/true/false as booleans, which Python counts as 1 and 0: true was accepted and printed as a
    published 1.00 % with its difference."""
    from tuneprune.shared.config import ConfigError

    with pytest.raises(ConfigError, match=f"published.feather.0.9 = {value}: an accuracy in % \\(0 to 100\\)"):
        validate(
            StudyConfig, {"methods": METHODS, "targets": [0.9], "seeds": [0], "published": {"feather": {0.9: value}}}
        )


def complete_trials(name: str, storage_url: str) -> int:
    storage = optuna.storages.RDBStorage(storage_url, heartbeat_interval=None)
    return sum(
        t.state.name == "COMPLETE"
        for n in study_names(name, storage)
        for t in optuna.load_study(study_name=n, storage=storage).trials
    )


@pytest.mark.ray
def test_study_killed_and_resumed_prints_the_mlflow_means(ray_session, search_driver, tmp_path, stores):
    """2 methods x 2 targets x 2 seeds on digits, 1 epoch, in packs of 2: the driver is killed after a cell finished,
    the study resumes with --resume without re-running it, and the table is the MLflow runs' test_acc, mean ± std."""
    document: dict[str, Any] = {
        "name": "tinystudy",
        "base": {"model": "small_cnn", "dataset": "digits", "epochs": 1, "batch_size": 64, "lr": 0.05},
        "methods": METHODS, "targets": [0.5, 0.9], "seeds": [0, 1],
        "published": {"feather": {0.5: 90.0, 0.9: 80.0}}, "resources": {"cpu": 1, "pack": 2},
    }  # fmt: skip
    path = tmp_path / "tinystudy.yaml"
    path.write_text(yaml.safe_dump(document))
    driver = search_driver(str(path), tmp_path, command="study")
    done = 0
    deadline = time.time() + 900  # generous: a machine busy with other work is slow to finish the first cell
    try:
        while time.time() < deadline and done == 0 and driver.poll() is None:
            with contextlib.suppress(Exception):  # the storage is not created yet
                done = complete_trials("tinystudy", stores["storage_url"])
            time.sleep(0.2)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    assert 1 <= done < 8, done
    client = MlflowClient(stores["tracking_uri"])
    experiment = client.get_experiment_by_name("tuneprune")
    assert experiment is not None
    experiment_ids = [experiment.experiment_id]
    finished_before = {
        r.data.tags[TAG_TRIAL]: r.info.run_id
        for r in client.search_runs(experiment_ids)
        if TAG_TRIAL in r.data.tags and r.info.status == "FINISHED"
    }
    assert finished_before

    out = subprocess.run(
        [sys.executable, "-m", "tuneprune.cli", "study", str(path), "--resume", "--no-progress",
         "--address", ray_session.get_runtime_context().gcs_address,
         "--tracking-uri", stores["tracking_uri"], "--storage", stores["storage_url"], "--results-dir", str(stores["results_root"])],
        capture_output=True, text=True, timeout=400, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    parents = client.search_runs(experiment_ids, f"tags.`{TAG_KIND}` = 'search'")
    assert len(parents) == 1
    assert parents[0].info.status == "FINISHED"
    children = [
        r for r in client.search_runs(experiment_ids) if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
    ]
    assert len(children) == 8
    assert len({r.data.tags[TAG_TRIAL] for r in children}) == 8  # one child per cell
    assert all(r.info.status == "FINISHED" for r in children)
    for run in children:  # cells finished before the kill were not re-run
        if run.data.tags[TAG_TRIAL] in finished_before:
            assert run.info.run_id == finished_before[run.data.tags[TAG_TRIAL]]

    cells = {
        r.info.run_id: dict(part.split("=") for part in r.info.run_name.split()[1:]) for r in children
    }  # g0-000 method=.. target=..
    csv = (stores["results_root"] / "tinystudy" / "study.csv").read_text().splitlines()
    header = csv[0].split(",")
    rows = {
        (row["method"], float(row["target"])): row
        for row in (dict(zip(header, line.split(","), strict=True)) for line in csv[1:])
    }
    assert len(rows) == 4
    for (method, target), row in rows.items():
        accuracies = [
            100 * r.data.metrics["test_acc"] for r in children
            if cells[r.info.run_id]["method"] == method and float(cells[r.info.run_id]["target"]) == target
        ]  # fmt: skip
        assert len(accuracies) == 2
        mean, std = np.mean(accuracies), np.std(accuracies, ddof=1)
        assert float(row["mean"]) == pytest.approx(mean, abs=1e-9)
        assert float(row["std"]) == pytest.approx(std, abs=1e-9)
        assert f"{mean:.2f} ± {std:.2f}" in out.stdout  # the printed table
        if method == "feather":
            published = document["published"]["feather"][target]
            assert float(row["published"]) == published
            assert float(row["difference"]) == pytest.approx(mean - published, abs=1e-9)
            assert f"{mean - published:+.2f}" in out.stdout
    assert "Welch's t-test" in out.stdout

    report = subprocess.run(
        [sys.executable, "-m", "tuneprune.cli", "report", str(stores["results_root"] / "tinystudy"), "--tracking-uri", stores["tracking_uri"]],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    page = (stores["results_root"] / "tinystudy" / "report" / "report.html").read_text()
    assert "Study: test_acc per method and target sparsity" in page
    assert "90 % published" in page
