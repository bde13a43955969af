"""Search with a real local Ray, real Optuna SQLite studies and a real MLflow SQLite store (search issue)."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from tuneprune.search import prepare_search, run_search
from tuneprune.shared.config import ConfigError
from tuneprune.tracking import TAG_TRIAL

BASE = {"model": "small_cnn", "dataset": "digits", "epochs": 3, "batch_size": 64}


def write_space(tmp_path, **fields) -> str:
    doc = {"base": BASE, "params": {"lr": {"type": "float", "low": 0.01, "high": 0.3, "log": True}}, "num_samples": 4}
    doc.update(fields)
    path = tmp_path / f"{doc.get('name', 'space')}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def children(summary):
    client = MlflowClient(summary.tracking_uri)
    exp = client.get_experiment_by_name("tuneprune")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{summary.parent_run_id}'")
    return client, runs


@pytest.mark.ray
def test_asha_search_tracks_every_trial(ray_session, tmp_path, stores):
    path = write_space(
        tmp_path,
        name="asha",
        base={**BASE, "epochs": 4},
        params={
            "lr": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
            "sparsity.theta.policy": {"type": "categorical", "choices": ["feather", "log_density"]},
        },
        grid={"sparsity.target": [0.9]},
        num_samples=6,
        max_concurrent=1,  # trials reach the rungs in one order on every machine, so the decisions are the same
        early_stopping={"type": "asha", "grace_period": 1, "reduction_factor": 2},
    )
    summary = run_search(prepare_search(path, **stores), progress=False)
    assert len(summary.trials) == 6
    states = [t["state"] for t in summary.trials]
    assert "PRUNED" in states
    assert "COMPLETE" in states

    client, runs = children(summary)
    assert len(runs) == 6
    assert len({r.data.tags[TAG_TRIAL] for r in runs}) == 6  # one child per trial, no duplicates
    by_key = {r.data.tags[TAG_TRIAL]: r for r in runs}
    for trial in summary.trials:
        run = by_key[trial["key"]]
        history = client.get_metric_history(run.info.run_id, "val_acc")
        steps = sorted(m.step for m in history)
        assert steps == list(range(1, len(steps) + 1))  # one continuous per-epoch history
        for key in ("sparsity_k", "sparsity", "theta", "mask_stability", "test_acc", "epoch_time"):
            assert client.get_metric_history(run.info.run_id, key), key
        if trial["state"] == "PRUNED":
            assert run.info.status == "KILLED"
            assert len(steps) < 4
        else:
            assert run.info.status == "FINISHED"
            assert len(steps) == 4
        assert run.data.params["sparsity.target"] == "0.9"
        assert run.info.run_name.startswith(trial["key"] + " ")
    study = optuna.load_study(study_name="asha[sparsity.target=0.9]", storage=stores["storage_url"])
    assert len(study.trials) == 6
    parent = client.get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["sampler"] == "tpe"
    assert "mlflow.source.git.commit" in parent.data.tags
    assert "version.torch" in parent.data.tags
    assert (summary.results_dir / "best.yaml").exists()


@pytest.mark.ray
def test_two_objective_search_returns_pareto_set(ray_session, tmp_path, stores):
    path = write_space(
        tmp_path,
        name="pareto",
        base={**BASE, "epochs": 2, "sparsity": {"target": 0.9, "scheduler": {"end_fraction": 1.0}}},
        params={"sparsity.target": {"type": "float", "low": 0.5, "high": 0.98}},
        objectives={"val_acc": "max", "sparsity": "max"},
        sampler={"type": "nsga2", "seed": 1},
        num_samples=5,
    )
    summary = run_search(prepare_search(path, **stores), progress=False)
    complete = [t for t in summary.trials if t["state"] == "COMPLETE"]
    assert len(complete) == 5
    points = [[-t["values"]["val_acc"], -t["values"]["sparsity"]] for t in complete]
    front_idx = NonDominatedSorting().do(np.array(points), only_non_dominated_front=True)
    expected = {complete[i]["key"] for i in front_idx}
    assert {b["key"] for b in summary.best} == expected


@pytest.mark.ray
def test_resume_runs_only_the_missing_trials(ray_session, tmp_path, stores):
    path = write_space(tmp_path, name="resumable", num_samples=2)
    first = run_search(prepare_search(path, **stores), progress=False)
    _, runs_before = children(first)
    started = {r.data.tags[TAG_TRIAL]: r.info.start_time for r in runs_before}
    with pytest.raises(ConfigError, match="already exists"):
        run_search(prepare_search(path, **stores), progress=False)
    second = run_search(prepare_search(path, num_samples=4, resume=True, **stores), progress=False)
    assert second.parent_run_id == first.parent_run_id
    client, runs_after = children(second)
    assert len(runs_after) == 4
    assert len({r.data.tags[TAG_TRIAL] for r in runs_after}) == 4
    for run in runs_after:  # the first two trials were not re-run
        key = run.data.tags[TAG_TRIAL]
        if key in started:
            assert run.info.start_time == started[key]
            assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 3
    study = optuna.load_study(study_name="resumable", storage=stores["storage_url"])
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4


@pytest.mark.ray
def test_a_resumed_search_runs_the_seeds_added_to_its_grid_and_keeps_its_trials_keys(ray_session, tmp_path, stores):
    """More replicates: ``tuneprune search --resume`` of a search whose ``grid.seed`` gained a seed in the middle and
    one at the end exited 2 (the grid moved a point). It trains the new seeds only, under new grid indices; the trials
    that ran keep their keys, MLflow runs and folders and are not trained again; summary.json lists all four."""
    fields: dict[str, Any] = {
        "name": "replicates", "base": {**BASE, "epochs": 1, "train_samples": 200}, "params": {}, "num_samples": 1,
    }  # fmt: skip
    first = run_search(prepare_search(write_space(tmp_path, **fields, grid={"seed": [0, 2]}), **stores), progress=False)
    ran = {r.data.tags[TAG_TRIAL]: (r.info.run_id, r.info.start_time) for r in children(first)[1]}
    assert set(ran) == {"g0-000", "g1-000"}

    def folders() -> dict[str, dict[str, int]]:  # each trial folder's files, and when each was written
        return {
            key: {p.name: p.stat().st_mtime_ns for p in (first.results_dir / "trials" / key).iterdir()} for key in ran
        }

    written = folders()

    grown = write_space(tmp_path, **fields, grid={"seed": [0, 1, 2, 3]})
    cli = [sys.executable, "-m", "tuneprune.cli", "search", grown, "--resume", "--no-progress",
           "--address", ray_session.get_runtime_context().gcs_address, "--tracking-uri", stores["tracking_uri"],
           "--storage", stores["storage_url"], "--results-dir", str(stores["results_root"])]  # fmt: skip
    out = subprocess.run(cli, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr

    summary = json.loads((first.results_dir / "summary.json").read_text())
    assert {t["grid"]["seed"]: t["key"] for t in summary["trials"]} == {
        0: "g0-000",
        1: "g2-000",
        2: "g1-000",
        3: "g3-000",
    }
    runs = children(first)[1]
    after = {r.data.tags[TAG_TRIAL]: (r.info.run_id, r.info.start_time) for r in runs}
    assert set(after) == {"g0-000", "g1-000", "g2-000", "g3-000"}
    assert {key: after[key] for key in ran} == ran  # the same runs, not trained again
    assert all(r.info.status == "FINISHED" for r in runs)
    assert folders() == written
    assert all((first.results_dir / "trials" / key / "model.pt").is_file() for key in ("g2-000", "g3-000"))
    parent = children(first)[0].get_run(first.parent_run_id).data  # MLflow keeps a param's first value
    assert (json.loads(parent.params["grid"]), json.loads(parent.tags["latest.grid"])) == (
        {"seed": [0, 2]},
        {"seed": [0, 1, 2, 3]},
    )


def test_a_new_search_refuses_a_name_its_optuna_storage_holds(tmp_path, stores):
    """A search's trials are its Optuna studies: a new search under a name they hold (with a fresh MLflow store, or
    another --tracking-uri) would run none of its trials and list the old ones; it stops before anything starts."""
    path = write_space(tmp_path, name="taken")
    optuna.create_study(study_name="taken", storage=stores["storage_url"])
    with pytest.raises(ConfigError, match=r"name = 'taken': a search of that name already exists \(Optuna study"):
        prepare_search(path, **stores)


@pytest.mark.parametrize("join", [False, True])
def test_resume_refuses_a_name_no_search_used(tmp_path, stores, join):
    """``--resume`` (exit 2 if there is none) never starts over, alone or with ``--join``: a typo must not start a
    new search."""
    path = write_space(tmp_path, name="typo")
    with pytest.raises(ConfigError, match=r"--resume --name 'typo': no search of that name to resume"):
        prepare_search(path, resume=True, join=join, **stores)


@pytest.mark.parametrize("join", [False, True])
def test_a_storage_without_the_searchs_studies_is_refused_when_its_parent_run_names_another(tmp_path, stores, join):
    """``--resume`` (or ``--join``) from another directory with the MLflow store given and ``--storage`` forgotten: the
    default storage there holds none of the search's studies, and the search ran every trial again as new ones (the
    same keys twice under one parent run, the summary listing only the new ones). The parent run names the storage of
    its studies: another one without them is refused in one line naming --storage and that storage, before anything
    starts; a parent run opened before its studies (a driver killed then) resumes with its own."""
    from tuneprune.search.studies import open_studies
    from tuneprune.tracking import RunTracker

    path = write_space(tmp_path, name="moved")
    first = prepare_search(path, **stores)
    open_studies(first.space, "moved", stores["storage_url"])
    tracker = RunTracker(stores["tracking_uri"])
    parent = tracker.start_parent("moved", "search", resume=False)
    tracker.log_params(parent, {"storage": stores["storage_url"]})
    (tmp_path / "other").mkdir()
    elsewhere = {**stores, "storage_url": f"sqlite:///{tmp_path / 'other' / 'optuna.db'}"}
    with pytest.raises(
        ConfigError,
        match=rf"^--storage sqlite:///{tmp_path}/other/optuna.db: holds no study of the search 'moved', whose parent "
        rf"run {parent} keeps its trials in sqlite:///{tmp_path}/optuna.db; pass --storage",
    ):
        prepare_search(path, resume=not join, join=join, **elsewhere)
    prepare_search(path, resume=not join, join=join, **stores)
    fresh = {**stores, "storage_url": f"sqlite:///{tmp_path / 'fresh.db'}"}
    tracker.start_parent("opened", "search", resume=False)  # killed before it logged its storage
    prepare_search(write_space(tmp_path, name="opened"), resume=not join, join=join, **fresh)


@pytest.mark.parametrize("join", [False, True])
def test_an_mlflow_store_without_the_searchs_parent_run_is_refused_when_its_trials_logged_elsewhere(
    tmp_path, stores, join
):
    """``--resume`` (or ``--join``) from another directory with ``--storage`` given and ``--tracking-uri`` forgotten:
    the search opened a new parent run in an empty ``mlruns.db`` there, its earlier trials' runs in the other store,
    and ``tuneprune report NAME`` then ended in MLflow's traceback ('Run with id=... not found'). Refused in one line
    naming --tracking-uri, before anything starts, when a trial of its studies has an MLflow run; studies whose
    trials logged nothing (a driver killed before) resume in any store."""
    from tuneprune.search.studies import distributions, open_studies

    path = write_space(tmp_path, name="logged")
    first = prepare_search(path, **stores)
    (gs,) = open_studies(first.space, "logged", stores["storage_url"])
    number = gs.ask(distributions(first.space)).number
    prepare_search(path, resume=not join, join=join, **stores)  # no MLflow run yet: any store will do
    gs.set_user_attrs(number, {"mlflow_run_id": "0123abcd"})
    gs.tell(number, 0.5)
    with pytest.raises(
        ConfigError,
        match=rf"^--tracking-uri sqlite:///{tmp_path}/mlruns.db: holds no parent run of the search 'logged' in "
        r"experiment 'tuneprune', whose trials were logged to another MLflow store or experiment \(run 0123abcd\); "
        r"pass the --tracking-uri \(and experiment\) they were logged to$",
    ):
        prepare_search(path, resume=not join, join=join, **stores)


def test_a_resume_elsewhere_than_the_searchs_results_is_refused_while_they_are_there(tmp_path, stores):
    """``--resume`` from another directory without ``--results-dir``: the trials left running started over from
    epoch 0 (their checkpoints in the search's folder), and summary.json went to a second folder beside the first
    one's models. The parent run records the results directory of its first driver (param ``results_dir``); a resume
    elsewhere while it exists is refused in one line naming --results-dir and it. ``--join`` drivers keep their own."""
    from tuneprune.tracking import RunTracker

    path = write_space(tmp_path, name="placed")
    first = prepare_search(path, **stores)
    tracker = RunTracker(stores["tracking_uri"])
    parent = tracker.start_parent("placed", "search", resume=False)
    tracker.log_params(parent, {"results_dir": str(first.results_dir)})
    first.results_dir.mkdir(parents=True)
    elsewhere = {**stores, "results_root": tmp_path / "other"}
    with pytest.raises(
        ConfigError,
        match=rf"^--results-dir {tmp_path}/other: the search 'placed' keeps its results in {first.results_dir} \(its "
        rf"parent run's results_dir\); pass --results-dir {tmp_path}/runs$",
    ):
        prepare_search(path, resume=True, **elsewhere)
    prepare_search(path, join=True, **elsewhere)
    prepare_search(path, resume=True, **stores)
    first.results_dir.rmdir()  # gone (another machine): wherever it is given
    prepare_search(path, resume=True, **elsewhere)


@pytest.mark.parametrize("join", [False, True])
def test_a_space_the_search_cannot_take_is_refused_before_it_runs(tmp_path, stores, join):
    """``--join`` or ``--resume`` of a search with a space whose params its trials cannot take (Optuna refuses another
    kind of distribution for a param name) or whose objectives differ: one line naming the field, before the parent
    run is touched or Ray starts (the first ask failed after Ray started, with a traceback and the parent FAILED)."""
    from tuneprune.search.studies import distributions, open_studies

    first = prepare_search(write_space(tmp_path, name="drawn"), **stores)
    (gs,) = open_studies(first.space, "drawn", stores["storage_url"])
    gs.tell(gs.ask(distributions(first.space)).number, 0.5)
    linear = {"lr": {"type": "float", "low": 0.01, "high": 0.3}}
    with pytest.raises(
        ConfigError, match=r"^params\.lr: the search 'drawn' drew it from FloatDistribution\(.*log=True"
    ):
        prepare_search(write_space(tmp_path, name="drawn", params=linear), resume=not join, join=join, **stores)
    sparse = {**BASE, "sparsity": {"target": 0.5}}
    for objectives in ({"test_acc": "max"}, {"val_acc": "max", "sparsity": "max"}):
        space = write_space(tmp_path, name="drawn", objectives=objectives, base=sparse)
        with pytest.raises(ConfigError, match=r"^objectives: the search 'drawn' has \{'val_acc': 'max'\}; this space"):
            prepare_search(space, resume=not join, join=join, **stores)
    prepare_search(write_space(tmp_path, name="drawn"), resume=not join, join=join, **stores)  # its own space


def test_a_search_start_builds_its_trial_specs_once(tmp_path, stores, monkeypatch):
    """The run config of every grid point (with each param's samples, every one checked, a model built for some) was
    built twice at a search's start: once by the space's checks, again for the grid points' data. Built once, and what
    the search reads is what was checked."""
    import tuneprune.search.runner
    import tuneprune.search.space

    built = []
    trial_specs = tuneprune.search.space.trial_specs

    def counted(space):
        built.append(space)
        return trial_specs(space)

    monkeypatch.setattr(tuneprune.search.space, "trial_specs", counted)
    monkeypatch.setattr(tuneprune.search.runner, "trial_specs", counted, raising=False)  # where it was imported
    prepared = prepare_search(write_space(tmp_path, grid={"seed": [0, 1]}), **stores)
    assert built == [prepared.space]
    assert [spec.seed for spec in prepared.space.specs] == [0] * 4 + [1] * 4  # each point alone, then lr's samples


def test_drivers_started_together_are_checked_against_the_first_to_open_the_studies(tmp_path, stores):
    """``--join`` drivers started at the same moment each passed the start-up check (no study yet), then opened the
    studies: a driver with another budget or another run config ran on without a word, and overwrote the budget the
    first one recorded. A driver opening studies another driver made since its check is checked against them, in
    one line, before its parent run opens."""
    from tuneprune.search.studies import open_studies

    fields: dict[str, Any] = {"name": "together", "grid": {"seed": [0, 1]}}
    first = prepare_search(write_space(tmp_path, **fields), join=True, **stores)
    late = [
        (prepare_search(write_space(tmp_path, **fields), num_samples=8, join=True, **stores), r"^num_samples = 8: "),
        (
            prepare_search(write_space(tmp_path, **fields, base={**BASE, "epochs": 4}), join=True, **stores),
            r"^epochs: ",
        ),
    ]
    open_studies(first.space, "together", stores["storage_url"], shared=True)
    for prepared, message in late:
        with pytest.raises(ConfigError, match=message):
            run_search(prepared, progress=False)
    assert MlflowClient(stores["tracking_uri"]).search_experiments(filter_string="name = 'tuneprune'") == []
    same = prepare_search(write_space(tmp_path, **fields), join=True, **stores)
    assert [gs.budget for gs in open_studies(same.space, "together", stores["storage_url"], shared=True)] == [4, 4]


def test_a_driver_joining_with_another_budget_is_refused_before_it_runs(tmp_path, stores, capsys):
    """The budget is the search's, recorded in its studies by its first driver: a ``--join`` driver asking for another
    ``--num-samples`` is refused in one line naming it, the budget and how to change it, before anything starts (it
    ran on silently, the drivers no longer stopping together); ``--resume`` (one driver) changes the budget."""
    from tuneprune.search.studies import open_studies

    path = write_space(tmp_path, name="budget")  # num_samples: 4
    first = prepare_search(path, join=True, **stores)
    open_studies(first.space, "budget", stores["storage_url"], shared=True)
    with pytest.raises(
        ConfigError,
        match=r"^num_samples = 8: the search 'budget' has a budget of 4 trials per grid point, shared by its drivers; "
        r"pass --num-samples 4 to join it, or change the budget with --resume --num-samples 8 \(without --join\)",
    ):
        prepare_search(path, num_samples=8, join=True, **stores)
    prepare_search(path, num_samples=4, join=True, **stores)  # its own budget
    resumed = prepare_search(path, num_samples=8, resume=True, **stores)
    capsys.readouterr()
    open_studies(resumed.space, "budget", stores["storage_url"])  # said: a plain --resume would go back to 4
    assert "num_samples: the budget changes from 4 to 8 trials per grid point" in capsys.readouterr().err
    assert prepare_search(path, num_samples=8, join=True, **stores).space.num_samples == 8


def test_a_grid_point_dropped_keeps_no_say_in_the_budget_drivers_join(tmp_path, stores):
    """A search whose last grid point was dropped, then its budget changed with ``--resume --num-samples 8``: the
    dropped point's study (not run any more) kept the budget of 4, and a ``--join --num-samples 8`` driver was refused
    ('has a budget of 4 ...; pass --num-samples 4'), then, with 4, by the points it runs: it could join with none.
    Only the studies of the space's grid points set the budget."""
    from tuneprune.search.studies import open_studies

    fields: dict[str, Any] = {"name": "shrunk", "grid": {"seed": [0, 1]}}
    first = prepare_search(write_space(tmp_path, **fields), join=True, **stores)  # num_samples: 4
    open_studies(first.space, "shrunk", stores["storage_url"], shared=True)
    path = write_space(tmp_path, **{**fields, "grid": {"seed": [0]}})
    resumed = prepare_search(path, num_samples=8, resume=True, **stores)
    open_studies(resumed.space, "shrunk", stores["storage_url"])
    assert prepare_search(path, num_samples=8, join=True, **stores).space.num_samples == 8
    with pytest.raises(ConfigError, match=r"^num_samples = 4: the search 'shrunk' has a budget of 8 trials"):
        prepare_search(path, num_samples=4, join=True, **stores)


@pytest.mark.parametrize("join", [False, True])
def test_a_space_that_changes_what_a_grid_point_trains_is_refused_before_it_runs(tmp_path, stores, join):
    """A study records its grid point's run config (base + grid + method, nothing searched) when it is made; a
    ``--resume`` or ``--join`` whose space gives another one is refused in one line naming the grid point, the field,
    both values and a new ``--name``, before anything starts (it ran on: the summary showed the finished trials with
    configs they never ran, and a trial left running failed on its checkpoint). What only says where a machine keeps
    its data or how it runs (data_dir, download, num_threads, device) is accepted; a study made before the record is
    not checked."""
    import optuna

    from tuneprune.search.studies import open_storage, open_studies, study_name

    methods = {"slow": {"lr": 0.01}, "fast": {"lr": 0.1}}
    fields: dict[str, Any] = {"name": "same", "grid": {"method": ["slow", "fast"]}, "methods": methods}
    first = prepare_search(write_space(tmp_path, **fields, params={}), **stores)
    open_studies(first.space, "same", stores["storage_url"])
    changed: list[tuple[dict[str, Any], str]] = [
        ({"methods": {**methods, "fast": {"lr": 0.2}}}, "lr: the search 'same' ran grid point method=fast with 0.1, "),
        ({"base": {**BASE, "epochs": 4}}, "epochs: the search 'same' ran grid point method=slow with 3, "),
        ({"base": {**BASE, "sparsity": {"target": 0.5}}}, "sparsity: the search 'same' ran grid point method=slow "),
    ]
    for change, message in changed:
        with pytest.raises(ConfigError, match=rf"^{message}.*this space gives .*; .*another --name"):
            prepare_search(
                write_space(tmp_path, **{**fields, **change}, params={}), resume=not join, join=join, **stores
            )
    machine = {**BASE, "data_dir": str(tmp_path), "download": False, "num_threads": 2, "device": "cpu"}
    prepare_search(
        write_space(tmp_path, **{**fields, "base": machine}, params={}), resume=not join, join=join, **stores
    )
    storage = open_storage(stores["storage_url"])
    optuna.create_study(storage=storage, study_name=study_name("older", {}))  # made before the record: not checked
    prepare_search(
        write_space(tmp_path, name="older", base={**BASE, "epochs": 4}), resume=not join, join=join, **stores
    )


def test_a_preset_file_named_from_another_directory_is_the_same_run_config(tmp_path, monkeypatch):
    """An adaptive schedule's ``preset: FILE`` is read into A, B, C and D at load: a ``--resume`` from another working
    directory (or a ``--join`` driver keeping the file elsewhere) names it by another path, and was refused
    ('sparsity.scheduler.preset: ... ran ... with 'presets/mine.yaml', this space gives '/.../presets/mine.yaml''), though
    it trains the same; a file of other constants is still refused, by the constant."""
    from tuneprune.search.space import load_space
    from tuneprune.search.studies import check_run_config, point_config

    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "mine.yaml").write_text("A: 0.5\nB: 0.8\nC: 20\nD: -0.01\n")
    (tmp_path / "presets" / "other.yaml").write_text("A: 0.4\nB: 0.8\nC: 20\nD: -0.01\n")
    monkeypatch.chdir(tmp_path)

    def space(preset: str):
        scheduler = {"type": "adaptive", "preset": preset}
        return load_space(
            {"base": {**BASE, "sparsity": {"target": 0.5, "scheduler": scheduler}}, "grid": {"seed": [0]}}
        )

    recorded = json.loads(json.dumps(point_config(space("presets/mine.yaml"), {"seed": 0})))
    monkeypatch.chdir(tmp_path / "presets")
    check_run_config(recorded, space("mine.yaml"), {"seed": 0}, "adaptive")
    check_run_config(recorded, space(str(tmp_path / "presets" / "mine.yaml")), {"seed": 0}, "adaptive")
    with pytest.raises(
        ConfigError, match=r"^sparsity\.scheduler\.A: the search 'adaptive' ran grid point seed=0 with 0\.5"
    ):
        check_run_config(recorded, space("other.yaml"), {"seed": 0}, "adaptive")


@pytest.mark.parametrize("join", [False, True])
def test_a_grid_point_keeps_its_index_when_a_resumed_grid_adds_drops_or_reorders_points(tmp_path, stores, join):
    """A trial's key carries its grid point's index (``g1-000``), its MLflow run and its folder found by it. A
    ``--resume`` or ``--join`` whose grid added a value before a point of the search (a seed in the middle of
    ``grid.seed``), reordered or dropped points was refused (the index was the point's place in the grid). Each point
    keeps the index its study records; a new one takes the next index of the search, a dropped point's never given
    again; its sampler is seeded ``sampler.seed`` + that index."""
    from tuneprune.search.searcher import trial_key
    from tuneprune.search.studies import distributions, open_studies

    def opened(seeds: list[int], resume: bool = True) -> dict[int, Any]:
        document = write_space(tmp_path, name="grow", grid={"seed": seeds}, sampler={"type": "tpe", "seed": 100})
        prepared = prepare_search(document, resume=resume and not join, join=resume and join, **stores)
        studies = open_studies(prepared.space, "grow", stores["storage_url"], shared=join)
        for gs in studies:  # a trial of each point, told
            gs.tell(gs.ask(distributions(prepared.space)).number, 0.5)
        return {gs.grid_point["seed"]: gs for gs in studies}

    def indices(studies: dict[int, Any]) -> dict[int, int]:
        return {seed: gs.index for seed, gs in studies.items()}

    assert indices(opened([0, 2], resume=False)) == {0: 0, 2: 1}  # a new search: the points' places, as ever
    grown = opened([0, 1, 2, 3])  # a seed in the middle of the first key, another at the end
    assert indices(grown) == {0: 0, 1: 2, 2: 1, 3: 3}
    assert [trial_key(grown[2].index, t) for t in grown[2].study.trials] == ["g1-000", "g1-001"]
    if join:  # seeded by the first driver to ask: sampler.seed + index
        assert grown[3].study.user_attrs["sampler_seed_from_trial_0"] == 103
    assert indices(opened([3, 5, 0])) == {3: 3, 5: 4, 0: 0}  # reordered, two dropped, one new
    assert indices(opened([1, 2, 4])) == {1: 2, 2: 1, 4: 5}  # 4 is not given 5's index of a dropped point


def test_drivers_opening_a_new_grid_point_at_once_agree_on_its_index(tmp_path, stores):
    """``--join`` drivers opening a grid point the search did not have yet give it one index (its trials' keys, MLflow
    runs and folders are theirs together), also when one of them finds the study another has just made, before that
    one recorded its index. Each hands out the grid points in turn, in the order of the grid."""
    from tuneprune.search.protocol import TrialContext
    from tuneprune.search.searcher import StudySearcher
    from tuneprune.search.studies import distributions, open_studies, study_name

    before = prepare_search(write_space(tmp_path, name="agree", grid={"seed": [0, 1]}, num_samples=2), **stores)
    open_studies(before.space, "agree", stores["storage_url"])
    path = write_space(tmp_path, name="agree", grid={"seed": [0, 5, 1, 6]}, num_samples=2)
    space = prepare_search(path, join=True, **stores).space
    # the first driver made the study of seed=5 and has not recorded its index yet when the second opens it
    optuna.create_study(
        storage=stores["storage_url"], study_name=study_name("agree", {"seed": 5}), directions=["maximize"]
    )
    second = open_studies(space, "agree", stores["storage_url"], shared=True)
    first = open_studies(space, "agree", stores["storage_url"], shared=True)
    assert [gs.index for gs in first] == [gs.index for gs in second] == [0, 2, 1, 3]
    context = TrialContext(stores["tracking_uri"], "tuneprune", "no-parent", str(tmp_path), dict(space.objectives))
    searcher = StudySearcher(space, first, context)
    handed_out = []
    while (gs := searcher._next_study()) is not None:
        gs.ask(distributions(space))
        handed_out.append(gs.grid_point["seed"])
    assert handed_out == [0, 5, 1, 6] * 2


def test_a_sampler_seed_past_32_bits_at_a_resumed_grid_index_is_refused_before_it_runs(tmp_path, stores):
    """A grid point's sampler takes ``sampler.seed`` + its grid index, which a resumed search may hold past the number
    of points its grid now lists (a point dropped before it, a new one after the search's): a seed that takes it past
    32 bits is refused in one line naming the field and the allowed range, before anything starts."""
    from tuneprune.search.studies import open_studies

    first = prepare_search(write_space(tmp_path, name="wide", grid={"seed": [0, 1, 2]}), **stores)
    open_studies(first.space, "wide", stores["storage_url"])
    top = 2**32 - 1
    for seeds, allowed in (([2], top - 2), ([7], top - 3)):  # g2; a new point: g3
        document = write_space(tmp_path, name="wide", grid={"seed": seeds}, sampler={"type": "tpe", "seed": top})
        with pytest.raises(ConfigError, match=rf"^sampler.seed = {top}: .* allowed: \[0, {allowed}\]$"):
            prepare_search(document, resume=True, **stores)
        document = write_space(tmp_path, name="wide", grid={"seed": seeds}, sampler={"type": "tpe", "seed": allowed})
        prepare_search(document, resume=True, **stores)


def test_the_parent_run_of_joined_drivers_ends_with_the_last_of_them(tmp_path, stores):
    """Drivers sharing a search (``--join``) share its parent run: one that ends while another still runs a trial
    leaves it RUNNING (it ended it FINISHED, or KILLED when interrupted, under the running one); the last one to end
    ends it, with its own status: an interrupted driver's own trials, RUNNING for a resume, are not another's."""
    from functools import partial

    from tuneprune.search import studies
    from tuneprune.tracking import RunTracker, parent_run

    path = write_space(tmp_path, name="drivers", num_samples=1)
    space = prepare_search(path, join=True, **stores).space
    (other,) = studies.open_studies(space, "drivers", stores["storage_url"], shared=True)
    other.ask(studies.distributions(space))  # the other driver's trial, training
    ended = run_search(prepare_search(path, join=True, **stores), progress=False)  # nothing left to ask: no Ray
    client = MlflowClient(stores["tracking_uri"])
    assert client.get_run(ended.parent_run_id).info.status == "RUNNING"

    assert other.heartbeats is not None
    other.heartbeats.close()  # the other driver is interrupted (its searcher's close), its trial left RUNNING
    tracker = RunTracker(stores["tracking_uri"])
    others = partial(studies.drivers_running, "drivers", stores["storage_url"])
    with pytest.raises(KeyboardInterrupt), parent_run(tracker, "drivers", "search", resume=True, others_running=others):
        raise KeyboardInterrupt
    assert client.get_run(ended.parent_run_id).info.status == "KILLED"


def test_a_trial_whose_values_the_run_config_refuses_together_fails_alone(tmp_path, stores, monkeypatch):
    """Values accepted one by one (threshold 'layer'; drop mode 'global') that the run config refuses together
    (formulas §4): the trial that drew them fails, FAIL with the reason, and the searcher asks the next one, instead
    of the search failing (and failing again on every --resume, the trial re-queued with the same values). The
    search's display counts it done and failed (it ended at 0/2 trials done, 0 failed)."""
    from rich.console import Console

    import tuneprune.output.progress
    from tuneprune.search.monitor import SearchMonitor
    from tuneprune.search.protocol import TrialContext
    from tuneprune.search.runner import _collect
    from tuneprune.search.searcher import StudySearcher
    from tuneprune.search.space import load_space
    from tuneprune.search.studies import open_studies
    from tuneprune.tracking import RunTracker

    space = load_space(
        {
            "name": "together",
            "base": {**BASE, "sparsity": {"target": 0.9, "drop": {"rho": 0.5, "mode": "layer"}}},
            "params": {
                "sparsity.threshold": {"type": "categorical", "choices": ["layer"]},
                "sparsity.drop.mode": {"type": "categorical", "choices": ["global"]},
            },
            "num_samples": 2,
        }
    )
    studies = open_studies(space, "together", stores["storage_url"])
    context = TrialContext(stores["tracking_uri"], "tuneprune", "no-parent", str(tmp_path), dict(space.objectives))
    written = StringIO()
    monkeypatch.setattr(tuneprune.output.progress, "console", lambda: Console(file=written, width=200))
    monitor = SearchMonitor(RunTracker(stores["tracking_uri"]), space.objectives, 2, show=True)
    monitor.setup()  # as Tune does when the search starts; here the display is plain lines (not a terminal)
    searcher = StudySearcher(space, studies, context, on_refused=monitor.count_refused)
    try:
        assert searcher._ask() is None  # both trials of the budget refused: nothing to hand out
    finally:
        searcher.close()
        monitor.close()
    assert ": 2/2 trials done, 0 running, 0 stopped early, 2 failed;" in written.getvalue().splitlines()[-1]
    trials, best = _collect(studies, space)
    assert [t["state"] for t in trials] == ["FAIL", "FAIL"]
    assert all("sparsity.threshold = 'layer' with sparsity.drop.mode = 'global'" in t["error"] for t in trials)
    assert best == []


def test_a_tie_for_the_best_trial_goes_to_the_lowest_trial_key(tmp_path, stores):
    """docs/reports.md: of trials with equal objective values summary.json's best is the one of the lower key. Optuna's
    best_trial (SQL ordered by value alone) took the lower Optuna number: g0-001 over g0-000, the claimed orphan queued
    again after g0-001 was asked, which carries its key."""
    from optuna.distributions import BaseDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    from tuneprune.search.runner import _collect
    from tuneprune.search.space import load_space
    from tuneprune.search.studies import CONTINUES, open_studies

    space = load_space(yaml.safe_load(Path(write_space(tmp_path, name="tie")).read_text()))
    (grid,) = open_studies(space, "tie", stores["storage_url"])
    lr: dict[str, BaseDistribution] = {"lr": FloatDistribution(0.01, 0.3, log=True)}
    grid.study.add_trial(create_trial(state=TrialState.FAIL, params={"lr": 0.1}, distributions=lr))
    grid.study.add_trial(create_trial(value=0.9, params={"lr": 0.2}, distributions=lr))
    orphan = {"key": "g0-000", CONTINUES: 0}
    grid.study.add_trial(create_trial(value=0.9, params={"lr": 0.1}, distributions=lr, user_attrs=orphan))
    trials, best = _collect([grid], space)
    assert [t["key"] for t in trials] == ["g0-001", "g0-000"]
    assert [b["key"] for b in best] == ["g0-000"]


def handed_out(space, studies, context):
    """The one trial a driver's searcher over ``studies`` hands out first, as its request."""
    from tuneprune.search.protocol import PackRequest
    from tuneprune.search.searcher import StudySearcher

    searcher = StudySearcher(space, studies, context)
    suggested = searcher.suggest("t1")
    searcher.close()
    assert suggested is not None
    (request,) = PackRequest.from_dict(suggested).members
    return request


def test_a_relative_data_dir_is_handed_to_the_trials_absolute(tmp_path, monkeypatch):
    """``data_dir: ds`` (relative, as ``tuneprune train`` takes it) was checked in the driver's working directory, then
    read by each trial in the directory Ray runs it in: every trial failed ('dataset = ...: not found, tried
    ds/...'). The driver hands the trials the folder it checked, as it does the SQLite stores."""
    from tuneprune.search.protocol import TrialContext
    from tuneprune.search.space import load_space
    from tuneprune.search.studies import open_studies

    monkeypatch.chdir(tmp_path)
    space = load_space({"base": {**BASE, "data_dir": "ds"}, "grid": {"seed": [0]}, "num_samples": 1})
    context = TrialContext(
        f"sqlite:///{tmp_path / 'mlruns.db'}", "tuneprune", "parent", str(tmp_path), {"val_acc": "max"}
    )
    request = handed_out(space, open_studies(space, "relative", f"sqlite:///{tmp_path / 'optuna.db'}"), context)
    assert request.spec["data_dir"] == str(tmp_path / "ds")


def test_the_summary_gives_each_trial_the_config_it_ran_after_a_resume_on_another_machine(tmp_path):
    """``--resume`` (or ``--join``) may change where a machine keeps the data and what it runs on (resources.cpu, so
    num_threads): summary.json and the best*.yaml files gave the finished trials the resumed space's values, configs
    they never ran (the best file did not reproduce its trial). Each trial's config is the one it was handed out
    with, as its MLflow run's config.json holds it (the device it ran on resolved)."""
    from tuneprune.search.protocol import TrialContext
    from tuneprune.search.runner import _collect
    from tuneprune.search.space import load_space
    from tuneprune.search.studies import open_studies

    document = {"base": BASE, "params": {"lr": {"type": "float", "low": 0.01, "high": 0.3}}, "num_samples": 1}
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    context = TrialContext(
        f"sqlite:///{tmp_path / 'mlruns.db'}", "tuneprune", "parent", str(tmp_path), {"val_acc": "max"}
    )
    first = load_space(document)
    studies = open_studies(first, "machine", url)
    request = handed_out(first, studies, context)
    studies[0].tell(request.number, 0.5)
    resumed = load_space({**document, "resources": {"cpu": 2}})
    trials, best = _collect(open_studies(resumed, "machine", url), resumed)
    assert trials[0]["config"] == best[0]["config"] == request.spec
    assert request.spec["num_threads"] == 1
    assert request.spec["device"] == "cpu"


def test_relative_sqlite_stores_are_made_absolute_for_the_trials(tmp_path, monkeypatch):
    """``--tracking-uri sqlite:///mlruns.db`` (MLflow's own relative form): Ray runs each trial in a directory of its
    own, where that path names another, empty file (every trial failed, "worker error"); the driver hands the trials
    the file it means, in the directory the command ran in."""
    monkeypatch.chdir(tmp_path)
    prepared = prepare_search(
        write_space(tmp_path, name="relative"), tracking_uri="sqlite:///rel.db", storage_url="sqlite:///relo.db"
    )
    assert prepared.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'rel.db'}"
    assert prepared.storage_url == f"sqlite:///{tmp_path.resolve() / 'relo.db'}"


def test_the_best_files_are_those_of_the_latest_summary_only(tmp_path, stores):
    """A resumed search whose best trials changed writes its best*.yaml again: the files of trials that are no
    longer best are gone, not left beside the new ones as if they were."""
    from tuneprune.search.runner import SearchSummary, _write_outputs
    from tuneprune.tracking import RunTracker

    tracker = RunTracker(stores["tracking_uri"])
    parent = tracker.start_parent("bestfiles", "search", resume=False)

    def written(*keys: str) -> list[str]:
        best = [{"key": k, "grid": {}, "params": {}, "values": {"val_acc": 0.5}, "config": BASE} for k in keys]
        summary = SearchSummary("bestfiles", parent, stores["tracking_uri"], "", tmp_path, {"val_acc": "max"}, [], best)
        _write_outputs(summary, tracker)
        return sorted(p.name for p in tmp_path.glob("best*.yaml"))

    assert written("g0-001", "g1-000") == ["best-00-g0-001.yaml", "best-01-g1-000.yaml"]
    assert written("g0-005", "g1-000") == ["best-00-g0-005.yaml", "best-01-g1-000.yaml"]
    assert written("g0-005") == ["best.yaml"]


def test_the_parent_runs_trial_counts_are_those_of_the_latest_summary(tmp_path, stores):
    """Drivers sharing a search (``--join``) write the parent run's ``trials_<state>`` counts in turn: the first to end
    counted the others' trials RUNNING, and the last one's counts, without RUNNING, left ``trials_running`` on the
    parent run for good (a resume whose grid dropped a failed trial's point left ``trials_fail``). Every state is
    counted, zero included."""
    from optuna.trial import TrialState

    from tuneprune.search.runner import SearchSummary, _write_outputs
    from tuneprune.tracking import RunTracker

    tracker = RunTracker(stores["tracking_uri"])
    parent = tracker.start_parent("counted", "search", resume=False)

    def counts(*states: str) -> dict[str, float]:
        trials = [{"key": f"g0-00{i}", "state": state} for i, state in enumerate(states)]
        summary = SearchSummary("counted", parent, stores["tracking_uri"], "", tmp_path, {"val_acc": "max"}, trials)
        _write_outputs(summary, tracker)
        metrics = MlflowClient(stores["tracking_uri"]).get_run(parent).data.metrics
        return {k: v for k, v in metrics.items() if k.startswith("trials_")}

    assert counts("COMPLETE", "RUNNING", "FAIL")["trials_running"] == 1
    every = {f"trials_{state.name.lower()}": 0.0 for state in TrialState}
    assert counts("COMPLETE", "COMPLETE") == {**every, "trials_complete": 2.0}


def test_the_parent_runs_summary_names_the_current_best_files_among_those_mlflow_keeps(tmp_path, stores):
    """MLflow's client cannot delete an artifact: after a resumed search whose best trials changed, the parent run's
    best/ still holds the former best files beside the new ones. Its summary.json, replaced at every write, names the
    current ones (``file`` of each best entry), each in best/ with its trial's config."""
    from tuneprune.search.runner import SearchSummary, _write_outputs
    from tuneprune.tracking import RunTracker

    tracker = RunTracker(stores["tracking_uri"])
    parent = tracker.start_parent("bestnames", "search", resume=False)
    client = MlflowClient(stores["tracking_uri"])

    def text(path: str) -> str:  # as the parent run holds it
        return Path(client.download_artifacts(parent, path, str(tmp_path / "down"))).read_text()

    def logged(*keys: str) -> tuple[list[str], list[str]]:
        best = [
            {"key": k, "grid": {}, "params": {}, "values": {"val_acc": 0.5}, "config": {**BASE, "seed": i}}
            for i, k in enumerate(keys)
        ]
        summary = SearchSummary("bestnames", parent, stores["tracking_uri"], "", tmp_path, {"val_acc": "max"}, [], best)
        _write_outputs(summary, tracker)
        uploaded = json.loads(text("summary.json"))["best"]
        current = [entry["file"] for entry in uploaded]
        for entry in uploaded:
            assert yaml.safe_load(text(f"best/{entry['file']}")) == entry["config"]
        return current, sorted(f.path.rsplit("/", 1)[-1] for f in client.list_artifacts(parent, "best"))

    assert logged("g0-001", "g1-000") == (["best-00-g0-001.yaml", "best-01-g1-000.yaml"],) * 2
    current, kept = logged("g0-005")
    assert current == ["best.yaml"]
    assert kept == ["best-00-g0-001.yaml", "best-01-g1-000.yaml", "best.yaml"]  # the former ones: MLflow keeps them


@pytest.mark.ray
def test_from_run_reproduces_a_trial_exactly(ray_session, tmp_path, stores, train_from_run):
    path = write_space(tmp_path, name="repro", num_samples=1, base={**BASE, "sparsity": {"target": 0.8}})
    summary = run_search(prepare_search(path, **stores), progress=False)
    trial = summary.trials[0]
    client = MlflowClient(summary.tracking_uri)
    logged = client.get_run(trial["mlflow_run_id"]).data.metrics["test_acc"]
    reproduced = train_from_run(trial["mlflow_run_id"], summary.tracking_uri)
    assert reproduced["test_acc"] == logged
    assert reproduced["train_loss"] == client.get_run(trial["mlflow_run_id"]).data.metrics["train_loss"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"params": {"sparsity.theta.alpah": {"type": "float", "low": 0, "high": 1}}},
            "params.sparsity.theta.alpah: unknown config path",
        ),
        ({"params": {"lr": {"type": "float", "low": 1.0, "high": 0.1}}}, "low = 1.0 is above high = 0.1"),
        ({"sampler": {"type": "annealing"}}, "sampler.type = 'annealing'"),
        ({"params": {}}, "params"),
        ({"resources": {"pack": 0}}, "resources.pack = 0"),
    ],
)
def test_malformed_space_exits_2_before_ray(tmp_path, fields, expected):
    path = write_space(tmp_path, **fields)
    out = subprocess.run(
        [sys.executable, "-m", "tuneprune.cli", "search", path, "--results-dir", str(tmp_path / "runs"),
         "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", "--storage", f"sqlite:///{tmp_path / 'o.db'}"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2
    assert expected in out.stderr
    assert out.stderr.strip().count("\n") == 0
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "m.db").exists()


@pytest.mark.ray
def test_relevance_delta_is_searchable(ray_session, tmp_path, stores):
    space = Path(__file__).resolve().parents[2] / "search_spaces" / "relevance_delta.yaml"
    overrides = ["base.epochs=2", "grid.relevance.percentage=[50]", "base.relevance.eval_samples=64"]
    summary = run_search(prepare_search(space, overrides, num_samples=2, **stores), progress=False)
    assert [t["state"] for t in summary.trials] == ["COMPLETE", "COMPLETE"]
    _, runs = children(summary)
    for run in runs:
        assert 0.0 <= run.data.metrics["pruned_acc"] <= 1.0
        assert 0.45 <= run.data.metrics["pruned_fraction"] <= 0.5
        assert "relevance.delta" in run.data.params


def test_an_orphan_left_inside_ask_gets_its_missing_params(tmp_path):
    """A driver killed inside ``study.ask`` leaves a RUNNING trial without params; the resumed search claims it,
    queues it again, and completes its params."""
    from tuneprune.search.protocol import TrialContext
    from tuneprune.search.space import load_space
    from tuneprune.search.studies import CONTINUES, open_studies

    params = {
        "lr": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
        "momentum": {"type": "categorical", "choices": [0.8, 0.9]},
    }
    space = load_space({"base": BASE, "params": params, "num_samples": 1})
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    open_studies(space, "orphan", url)[0].study.ask()  # created, no param suggested yet
    studies = open_studies(space, "orphan", url)
    queued = studies[0].study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs[CONTINUES] for t in queued] == [0]  # claimed (FAIL) and queued again as trial 1
    assert studies[0].remaining == 1  # one trial of a budget of one
    context = TrialContext("sqlite:///m.db", "tuneprune", "parent", str(tmp_path), {"val_acc": "max"})
    request = handed_out(space, studies, context)
    assert request.resume_epoch == 0  # no checkpoint recorded
    assert request.number == 1  # the orphan, queued again
    assert set(request.params) == {"lr", "momentum"}
    assert 0.01 <= request.params["lr"] <= 0.3
    assert request.spec["momentum"] == request.params["momentum"]
    assert studies[0].remaining == 0


def killed_driver(monkeypatch, space, study: str, url: str, context, attr: str) -> None:
    """A driver that asks one trial of ``study`` and dies (``KeyboardInterrupt``) as it writes the trial's user
    attribute ``attr``."""
    from tuneprune.search.searcher import StudySearcher
    from tuneprune.search.studies import GridStudy, open_studies

    setting = GridStudy.set_user_attrs

    def killed(self, number, attrs):
        if attr in attrs:
            raise KeyboardInterrupt("the driver dies here")
        setting(self, number, attrs)

    with monkeypatch.context() as patched:
        patched.setattr(GridStudy, "set_user_attrs", killed)
        with pytest.raises(KeyboardInterrupt):
            StudySearcher(space, open_studies(space, study, url), context).suggest("t")


def test_a_trial_cut_short_after_its_mlflow_run_was_opened_goes_on_in_that_run(tmp_path, monkeypatch):
    """A driver killed after it opened a trial's MLflow run and before it named the trial: the resumed search
    claims the trial and hands it out again under the same key, into the same MLflow run (no second run)."""
    from mlflow.tracking import MlflowClient

    from tuneprune.search.protocol import TrialContext
    from tuneprune.search.space import load_space
    from tuneprune.search.studies import CONTINUES, open_studies

    space = load_space({"base": BASE, "params": {"lr": {"type": "float", "low": 0.01, "high": 0.3}}, "num_samples": 1})
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    tracking_uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    context = TrialContext(tracking_uri, "tuneprune", "parent", str(tmp_path), {"val_acc": "max"})
    killed_driver(monkeypatch, space, "cut", url, context, "name")
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("tuneprune")
    assert experiment is not None
    (opened,) = client.search_runs([experiment.experiment_id])
    studies = open_studies(space, "cut", url)
    request = handed_out(space, studies, context)
    assert request.key == "g0-000"  # the key of the trial cut short, not of the trial queued in its place
    assert request.mlflow_run_id == opened.info.run_id
    assert [t.user_attrs.get(CONTINUES) for t in studies[0].study.get_trials()] == [None, 0]
    assert len(client.search_runs([opened.info.experiment_id])) == 1


def test_an_orphan_cut_short_before_its_key_goes_on_under_one_key_when_cut_short_again(tmp_path, monkeypatch):
    """A driver killed inside the ask (before the trial's key was written), then the driver that took the orphan
    killed after it opened its MLflow run: the continuation carries the key it was handed out under, so the
    third driver goes on under that key, into that one MLflow run."""
    from mlflow.tracking import MlflowClient

    from tuneprune.search.protocol import TrialContext
    from tuneprune.search.space import load_space
    from tuneprune.search.studies import open_studies

    space = load_space({"base": BASE, "params": {"lr": {"type": "float", "low": 0.01, "high": 0.3}}, "num_samples": 1})
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    tracking_uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    context = TrialContext(tracking_uri, "tuneprune", "parent", str(tmp_path), {"val_acc": "max"})
    killed_driver(monkeypatch, space, "twice", url, context, "key")  # trial 0 asked, no key
    killed_driver(monkeypatch, space, "twice", url, context, "name")  # trial 1 continues it, its run opened, unnamed
    studies = open_studies(space, "twice", url)
    assert studies[0].study.trials[1].user_attrs["key"] == "g0-001"  # the key it was handed out under
    request = handed_out(space, studies, context)
    assert request.key == "g0-001"
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("tuneprune")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])  # one MLflow run for the one trial
    assert request.mlflow_run_id == run.info.run_id


def test_a_trial_claimed_before_it_was_named_is_asked_anew_not_the_search_failed(tmp_path, monkeypatch):
    """Two drivers share a study (``--join``); one loses its connection and, retrying its ask, claims the trials
    without a name (``adopt_cut_short``): among them the other's, asked an instant before. That driver's next
    write fails (the trial is FAIL): it asks again, gets the queued trial, and hands it out under one key."""
    from tuneprune.search.protocol import PackRequest, TrialContext
    from tuneprune.search.searcher import StudySearcher
    from tuneprune.search.space import load_space
    from tuneprune.search.studies import CONTINUES, GridStudy, claimed, open_studies

    space = load_space({"base": BASE, "params": {"lr": {"type": "float", "low": 0.01, "high": 0.3}}, "num_samples": 2})
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    context = TrialContext(
        f"sqlite:///{tmp_path / 'mlruns.db'}", "tuneprune", "parent", str(tmp_path), {"val_acc": "max"}
    )
    (reconnecting,) = open_studies(space, "shared", url, shared=True)
    setting = GridStudy.set_user_attrs
    adopted: list[int] = []

    def other_driver_adopts_first(self, number, attrs):
        if not adopted:
            adopted.append(number)
            reconnecting.adopt_cut_short()
        setting(self, number, attrs)

    studies = open_studies(space, "shared", url, shared=True)
    searcher = StudySearcher(space, studies, context)
    with monkeypatch.context() as patched:
        patched.setattr(GridStudy, "set_user_attrs", other_driver_adopts_first)
        suggested = searcher.suggest("t1")
    searcher.close()
    assert reconnecting.heartbeats is not None
    reconnecting.heartbeats.close()
    assert suggested is not None
    (request,) = PackRequest.from_dict(suggested).members
    trials = studies[0].study.get_trials()
    assert claimed(trials) == {adopted[0]}  # the first ask, claimed by the other driver
    assert trials[request.number].user_attrs[CONTINUES] == adopted[0]  # its queued copy, handed out
    assert trials[request.number].user_attrs["key"] == request.key


def test_a_lone_driver_counts_its_asks_and_a_shared_study_is_read_again(tmp_path):
    """``GridStudy.remaining``: a lone driver reads the study once and counts the trials it asks; drivers that
    share a study (``--join``) read it at every call, so they also see the trials the others asked."""
    from tuneprune.search.studies import CONTINUES, GridStudy, open_storage

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=url, study_name="count")
    study.ask()  # asked before: RUNNING, counted by both
    lone = GridStudy(0, {}, study, budget=3, storage=open_storage(url))
    shared = GridStudy(0, {}, optuna.load_study(study_name="count", storage=url), budget=3, shared=True)
    assert (lone.remaining, shared.remaining) == (2, 2)
    number = lone.ask({}).number
    assert number == 1
    lone.set_user_attrs(number, {"name": "g0-001"})  # handed out
    assert (lone.remaining, shared.remaining) == (1, 1)
    study.ask()  # another driver's ask: only the shared study sees it
    assert (lone.remaining, shared.remaining) == (1, 0)
    lone.adopt_cut_short()  # after a lost connection the lone driver counts again
    queued = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs[CONTINUES] for t in queued] == [0, 2]  # the trials without a name are claimed, queued
    # and none new: three of three taken (a claimed orphan, FAIL, and the trial queued in its place count once)
    assert (lone.remaining, shared.remaining) == (2, 2)


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_a_resumed_search_does_not_draw_its_first_trials_again(tmp_path, sampler):
    """``--resume`` asks the missing trials of a seeded sampler: they must not replay the values the first driver's
    sampler drew from the same seed (a resumed search trained a copy of trial 0 in place of a new point)."""
    from tuneprune.search.space import load_space
    from tuneprune.search.studies import distributions, open_studies

    params = {"lr": {"type": "float", "low": 0.01, "high": 0.3, "log": True}}
    space = load_space({"base": BASE, "params": params, "num_samples": 4, "sampler": {"type": sampler, "seed": 0}})
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = open_studies(space, "resumed", url)[0].study
    drawn = first.ask(distributions(space))
    first.tell(drawn, 0.5)  # the first driver finished trial 0, then died
    resumed = open_studies(space, "resumed", url)[0].study
    assert resumed.ask(distributions(space)).params != drawn.params


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_drivers_joining_a_new_study_together_draw_their_own_values(tmp_path, sampler):
    """``--join`` drivers opening a new study at the same moment all find it empty: each must still draw values of
    its own (a seed from the number of the first trial it asks, which the storage hands to it alone, recorded in the
    study), not repeat the others' draws, while a lone joined driver draws what a plain search draws."""
    from tuneprune.search.space import load_space
    from tuneprune.search.studies import distributions, open_studies, sampler_seed

    params = {"lr": {"type": "float", "low": 0.01, "high": 0.3, "log": True}}
    space = load_space({"base": BASE, "params": params, "num_samples": 4, "sampler": {"type": sampler, "seed": 0}})
    plain = open_studies(space, "plain", f"sqlite:///{tmp_path / 'plain.db'}")[0].study
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    drivers = [open_studies(space, "joined", url, shared=True)[0] for _ in range(3)]  # all before any ask
    asked = [[gs.ask(distributions(space)).params["lr"] for _ in range(2)] for gs in drivers]
    assert len({lr for draws in asked for lr in draws}) == 6  # no driver repeats another's values
    assert asked[0] == [plain.ask(distributions(space)).params["lr"] for _ in range(2)]  # the first: as a lone search
    recorded = drivers[0].study.user_attrs
    assert {k: v for k, v in recorded.items() if k.startswith("sampler_seed")} == {
        "sampler_seed_from_trial_0": 0,
        "sampler_seed_from_trial_2": sampler_seed(space, 0, 2),
        "sampler_seed_from_trial_4": sampler_seed(space, 0, 4),
    }
    for gs in drivers:
        assert gs.heartbeats is not None
        gs.heartbeats.close()


def test_a_trial_asked_ahead_keeps_its_key_and_values_and_a_resume_asks_only_the_missing_ones(tmp_path):
    """A driver interrupted while trial 0 trained had asked trial 1 ahead (named, never started): the resumed search
    hands both out again under their keys with their drawn values, then asks the one missing trial, numbered after
    the two queued in their place (g0-004), its values drawn anew (docs/searches.md, "Interruptions")."""
    from tuneprune.search.protocol import PackRequest, TrialContext
    from tuneprune.search.searcher import StudySearcher
    from tuneprune.search.space import load_space
    from tuneprune.search.studies import open_studies

    space = load_space({"base": BASE, "params": {"lr": {"type": "float", "low": 0.01, "high": 0.3}}, "num_samples": 3})
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    context = TrialContext(
        f"sqlite:///{tmp_path / 'mlruns.db'}", "tuneprune", "parent", str(tmp_path), {"val_acc": "max"}
    )
    interrupted = StudySearcher(space, open_studies(space, "ahead", url), context)
    assert interrupted.suggest("t1") is not None  # trial 0 handed out, trial 1 asked ahead
    interrupted.close()  # Ctrl-C
    asked = {t.user_attrs["key"]: t.params for t in interrupted.studies[0].study.get_trials()}
    assert list(asked) == ["g0-000", "g0-001"]
    resumed = StudySearcher(space, open_studies(space, "ahead", url), context)
    suggested = [resumed.suggest(f"t{i}") for i in range(3)]
    assert resumed.suggest("t3") is None  # the budget of three handed out
    resumed.close()
    requests = [PackRequest.from_dict(s).members[0] for s in suggested if s is not None]
    assert [(r.key, r.params) for r in requests[:2]] == list(asked.items())
    assert requests[2].key == "g0-004"
    assert requests[2].params not in asked.values()
