"""Evolution of Stochastic Pruning with pymoo on a real local Ray, tracked in a real MLflow SQLite store (formulas §5)."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from tuneprune.evolution import EvolutionSpace, prepare_evolution, run_evolution
from tuneprune.evolution.problem import new_algorithm
from tuneprune.shared.config import ConfigError
from tuneprune.tracking import TAG_TRIAL

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "search_spaces").glob("evolve_*.yaml"))
SPACE = {
    "train": {"model": "small_cnn", "dataset": "digits", "epochs": 3, "batch_size": 64, "lr": 0.05},
    "algorithm": {"type": "nsga2", "pop_size": 6, "generations": 3, "seed": 1},
    "variables": {"rate": {"low": 0.5, "high": 0.97}},
    "samples": 2,
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store and results root for the module (creating a SQLite store takes seconds)."""
    root = tmp_path_factory.mktemp("evolve")
    return {"tracking_uri": f"sqlite:///{root / 'mlruns.db'}", "results_root": root / "runs"}


def evolve(store, dense_digits, tmp_path, name, overrides=(), resume=False, **fields):
    doc = {**SPACE, **fields}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    prepared = prepare_evolution(path, list(overrides), name=name, resume=resume, checkpoint=dense_digits[0], **store)
    return run_evolution(prepared, progress=False)


def generation_runs(summary):
    client = MlflowClient(summary.tracking_uri)
    exp = client.get_experiment_by_name("tuneprune")
    assert exp is not None
    return client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{summary.parent_run_id}'")


def front_points(summary) -> list[tuple]:
    return [(r["sigma"], r["rate"], r["accuracy"], r["sparsity"]) for r in summary.front]


@pytest.mark.ray
def test_evolution_front_hypervolume_and_tracking(ray_session, store, dense_digits, tmp_path):
    summary = evolve(store, dense_digits, tmp_path, "plain")
    F = np.array([[-r["accuracy"], -r["sparsity"]] for r in summary.front])
    assert len(F) >= 2
    assert len(NonDominatedSorting().do(F, only_non_dominated_front=True)) == len(F)
    assert len(summary.hypervolume) == 3
    assert all(b >= a for a, b in itertools.pairwise(summary.hypervolume))
    assert summary.evaluated == 18
    assert summary.failed == 0
    assert all(0.5 * 0.9 < r["sparsity"] < 0.97 and "deterministic_accuracy" in r for r in summary.front)

    runs = generation_runs(summary)
    assert sorted(r.data.tags[TAG_TRIAL] for r in runs) == ["gen-001", "gen-002", "gen-003"]
    assert all(r.info.status == "FINISHED" and "hypervolume" in r.data.metrics for r in runs)
    assert all(json.loads(r.data.params["reference_point"]) == [0.0, 0.0] for r in runs)
    out = summary.results_dir
    assert {"front.csv", "front.png", "summary.json", "state.pt", "dense.pt"} <= {p.name for p in out.iterdir()}
    assert sorted(p.name for p in (out / "population").iterdir()) == ["gen-001.csv", "gen-002.csv", "gen-003.csv"]
    saved = json.loads((out / "summary.json").read_text())
    assert saved["parent_run_id"] == summary.parent_run_id
    assert saved["hypervolume"] == summary.hypervolume
    client = MlflowClient(summary.tracking_uri)
    assert client.get_run(summary.parent_run_id).info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(summary.parent_run_id)} >= {"front.csv", "front.png", "summary.json"}


@pytest.mark.ray
def test_a_given_dense_model_is_loaded_once(ray_session, store, dense_digits, tmp_path, monkeypatch):
    """``--checkpoint`` (and ``--from-run``, each load a download of model.pt) was loaded by prepare_evolution to
    check its layers, then again by run_evolution; the checked model is the one evolved and kept as dense.pt."""
    import torch

    import tuneprune.stochastic.dense
    from tuneprune.training import load_model

    loads = []
    obtain_model = tuneprune.stochastic.dense.obtain_model

    def counted(*args, **kwargs):
        loads.append(args)
        return obtain_model(*args, **kwargs)

    monkeypatch.setattr(tuneprune.stochastic.dense, "obtain_model", counted)
    summary = evolve(store, dense_digits, tmp_path, "loaded-once", ["algorithm.generations=1"])
    assert len(loads) == 1
    given, kept = (
        load_model(dense_digits[0])[0].state_dict(),
        load_model(summary.results_dir / "dense.pt")[0].state_dict(),
    )
    assert given.keys() == kept.keys()
    assert all(torch.equal(given[k], kept[k]) for k in given)


@pytest.mark.ray
def test_interrupted_and_resumed_evolution_ends_with_the_same_front(ray_session, store, dense_digits, tmp_path):
    straight = evolve(store, dense_digits, tmp_path, "straight", ["algorithm.generations=4"])
    evolve(store, dense_digits, tmp_path, "halves", ["algorithm.generations=2"])
    resumed = evolve(store, dense_digits, tmp_path, "halves", ["algorithm.generations=4"], resume=True)
    assert front_points(resumed) == front_points(straight)
    assert resumed.hypervolume == straight.hypervolume
    assert len(generation_runs(resumed)) == 4


@pytest.mark.ray
def test_a_failing_individual_is_recorded_and_the_evolution_finishes(ray_session, store, dense_digits, tmp_path):
    summary = evolve(store, dense_digits, tmp_path, "failing", fail_individuals=[[2, 3]], max_retries=1)
    population = (summary.results_dir / "population" / "gen-002.csv").read_text().splitlines()
    failed = [line for line in population[1:] if ",failed," in line]
    assert summary.failed == 1
    assert len(failed) == 1
    assert "InjectedFailure" in failed[0]
    assert len(summary.hypervolume) == 3
    assert (3, 2) not in {(r["index"], r["generation"]) for r in summary.front}


@pytest.mark.ray
def test_a_failed_deterministic_comparison_is_absent_not_measured(ray_session, store, dense_digits, tmp_path, capsys):
    """The front's rates pruned once without noise for comparison: a failed evaluation showed
    ``deterministic_accuracy`` 0.0 in the front, summary, CSV, plot and report as if measured. It is absent (None, an
    empty CSV cell), not drawn, and the console and report say it failed. ``fail_individuals`` (0, i) fails the
    comparison of the front's i-th point."""
    from tuneprune.cli import main
    from tuneprune.cli.evolve import print_front
    from tuneprune.reports.evolution import baselines

    summary = evolve(
        store, dense_digits, tmp_path, "compared", ["algorithm.generations=2"], fail_individuals=[[0, 0]], max_retries=0
    )
    first, *others = summary.front
    assert first["deterministic_accuracy"] is None
    assert others
    assert all(isinstance(r["deterministic_accuracy"], float) for r in others)
    saved = json.loads((summary.results_dir / "summary.json").read_text())
    assert saved["front"][0]["deterministic_accuracy"] is None
    with open(summary.results_dir / "front.csv") as fh:
        assert next(csv.DictReader(fh))["deterministic_accuracy"] == ""
    drawn = baselines(saved)["deterministic pruning, same rates"]
    assert drawn.tolist() == [[r["sparsity"], r["deterministic_accuracy"]] for r in others]
    print_front(summary)
    assert f"deterministic pruning failed at 1 of {len(summary.front)} front points" in capsys.readouterr().out
    assert main(["report", str(summary.results_dir)]) == 0
    html = (summary.results_dir / "report" / "report.html").read_text()
    assert f"Deterministic pruning failed at 1 of {len(summary.front)} front points: not drawn." in html


@pytest.mark.ray
def test_packed_generations_give_the_population_table_of_one_task_each(ray_session, store, dense_digits, tmp_path):
    alone = evolve(store, dense_digits, tmp_path, "unpacked", ["algorithm.generations=2"])
    packed = evolve(store, dense_digits, tmp_path, "packed", ["algorithm.generations=2", "resources.pack=3"])
    for generation in ("gen-001.csv", "gen-002.csv"):
        assert (packed.results_dir / "population" / generation).read_text() == (
            alone.results_dir / "population" / generation
        ).read_text()
    assert packed.front == alone.front
    assert packed.hypervolume == alone.hypervolume


@pytest.mark.ray
def test_per_group_rates_are_variables(ray_session, store, dense_digits, tmp_path):
    groups = {"early": ["features.3"], "late": ["features.7"]}
    summary = evolve(
        store,
        dense_digits,
        tmp_path,
        "groups",
        ["algorithm.generations=1", "algorithm.type=nsga3"],
        variables={"groups": groups},
    )
    assert summary.rate_names == ["rate.early", "rate.late"]
    assert all({"rate.early", "rate.late"} <= set(r) for r in summary.front)


@pytest.mark.parametrize("kind", ["nsga2", "nsga3", "smsemoa"])
def test_algorithm_state_round_trips_mid_run(kind):
    """A pickled-and-restored algorithm continues exactly as the original (no Ray: synthetic objectives)."""
    space = EvolutionSpace.model_validate({"algorithm": {"type": kind, "pop_size": 6}})

    def step(algorithm):
        population = algorithm.ask()
        X = population.get("X")
        population.set("F", np.stack([X[:, 0], -(X[:, 1] ** 2)], axis=1))
        algorithm.tell(infills=population)
        return X

    original = new_algorithm(space)
    step(original)
    copy = cloudpickle.loads(cloudpickle.dumps(original))
    assert all(np.array_equal(step(original), step(copy)) for _ in range(2))


def test_resume_refuses_a_changed_space_and_a_rerun_without_resume(store, dense_digits, tmp_path):
    from tuneprune.evolution.space import EvolutionSpace as Space
    from tuneprune.evolution.state import STATE_NAME, EvolutionState

    space = Space.model_validate(SPACE)
    out = store["results_root"] / "guarded"
    out.mkdir(parents=True)
    EvolutionState(space.fingerprint(), new_algorithm(space)).save(out / STATE_NAME)
    path = tmp_path / "guarded.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    with pytest.raises(ConfigError, match="pass --resume"):
        prepare_evolution(path, **store)
    with pytest.raises(ConfigError, match=r"only algorithm.generations, train.data_dir, .* may change"):
        prepare_evolution(path, ["samples=5"], resume=True, **store)
    prepared = prepare_evolution(path, ["algorithm.generations=9"], resume=True, **store)
    assert prepared.state is not None
    assert prepared.state.generation == 0


@pytest.mark.parametrize("saved_by", ["this version", "versions before 2026-12-05"])
def test_resume_on_another_machine_may_change_where_the_data_is_and_what_runs_it(saved_by, store, tmp_path):
    """``--resume`` on another node or from another directory gives other ``train.data_dir``, ``download``,
    ``num_threads`` or ``device``: refused as "the space differs" when the whole train section was hashed. Those may
    change, as for searches (``MACHINE_FIELDS``); what the model trains may not; and an evolution saved with the old
    whole-space fingerprint still resumes."""
    import hashlib

    from tuneprune.evolution.space import RESULT_FIELDS
    from tuneprune.evolution.state import STATE_NAME, EvolutionState

    space = EvolutionSpace.model_validate(SPACE)
    whole = space.model_dump(mode="json", include=RESULT_FIELDS)  # what the old fingerprint hashed
    whole["algorithm"].pop("generations")
    old = hashlib.sha256(json.dumps(whole, sort_keys=True).encode()).hexdigest()[:16]
    name = f"moved-{saved_by.split()[0]}"
    out = store["results_root"] / name
    out.mkdir(parents=True)
    fingerprint = space.fingerprint() if saved_by == "this version" else old
    EvolutionState(fingerprint, new_algorithm(space), generation=1).save(out / STATE_NAME)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    assert prepare_evolution(path, resume=True, **store).state is not None
    if saved_by == "this version":
        moved = [f"train.data_dir={tmp_path}", "train.download=false", "train.num_threads=1", "train.device=cpu"]
        assert prepare_evolution(path, moved, resume=True, **store).state is not None
    expected = (
        f"^--resume: the space differs from the one {name!r} started with \\(only algorithm.generations, "
        "train.data_dir, train.download, train.num_threads, train.device, train.sparsity.scheduler.preset may change\\)$"
    )
    with pytest.raises(ConfigError, match=expected):
        prepare_evolution(path, ["train.lr=0.1"], resume=True, **store)


def test_a_duplicate_name_is_refused_leaving_no_results_folder(store, tmp_path):
    """A new evolution under the name of an MLflow parent run (its results folder moved or deleted) was refused only
    once ``runs/NAME`` had been made, and left it behind, empty; refused in one line before anything is made."""
    from tuneprune.tracking import RunTracker

    tracker = RunTracker(store["tracking_uri"], "tuneprune")
    parent_id = tracker.start_parent("taken", "evolution", resume=False)
    tracker.finish(parent_id, "FINISHED")
    path = tmp_path / "taken.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    expected = (
        f"^name = 'taken': an evolution of that name already exists \\(MLflow run {parent_id}\\); "
        "pass --resume to continue it or choose another --name$"
    )
    with pytest.raises(ConfigError, match=expected):
        run_evolution(prepare_evolution(path, **store), progress=False)
    assert not (store["results_root"] / "taken").exists()
    assert tracker.client.get_run(parent_id).info.status == "FINISHED"


def test_resume_refuses_fewer_generations_than_were_run(store, tmp_path):
    """``--resume`` with ``algorithm.generations`` below the generations already run ran none, showed the front of all of
    them and tagged the parent run with the smaller number (``evolution.generations``); refused in one line."""
    from tuneprune.evolution.state import STATE_NAME, EvolutionState

    space = EvolutionSpace.model_validate(SPACE)
    out = store["results_root"] / "shrunk"
    out.mkdir(parents=True)
    EvolutionState(space.fingerprint(), new_algorithm(space), generation=3).save(out / STATE_NAME)
    path = tmp_path / "shrunk.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    expected = (
        "algorithm.generations = 2: the evolution 'shrunk' has run 3 generations; --resume continues it to 3 or more"
    )
    with pytest.raises(ConfigError, match=f"^{expected}$"):
        prepare_evolution(path, ["algorithm.generations=2"], resume=True, **store)
    assert prepare_evolution(path, ["algorithm.generations=3"], resume=True, **store).state is not None


def test_a_resumed_dense_model_and_its_layers_are_checked_before_the_parent_run_reopens(store, dense_digits, tmp_path):
    """A driver stopped in its first generation left dense.pt and the parent run, no state: ``--resume`` with a misnamed
    layer reopened the parent run and then failed it (FAILED until resumed again); refused before, the run untouched."""
    import shutil

    from tuneprune.evolution.runner import DENSE_NAME
    from tuneprune.tracking import RunTracker

    out = store["results_root"] / "halted"
    out.mkdir(parents=True)
    shutil.copy(dense_digits[0], out / DENSE_NAME)
    tracker = RunTracker(store["tracking_uri"], "tuneprune")
    parent_id = tracker.start_parent("halted", "evolution", resume=False)
    tracker.finish(parent_id, "KILLED")
    path = tmp_path / "halted.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    with pytest.raises(ConfigError, match=r"^target.exclude: no module named 'layer4' in the model$"):
        prepare_evolution(path, ["target.exclude=[layer4]"], resume=True, **store)
    assert tracker.client.get_run(parent_id).info.status == "KILLED"
    assert prepare_evolution(path, resume=True, **store).dense is not None  # the dense model is loaded once


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("algorithm.pop_size=1", "algorithm.pop_size = 1: Input should be greater than or equal to 2"),
        ("algorithm.type=cmaes", "algorithm.type = 'cmaes': Input should be 'nsga2', 'nsga3' or 'smsemoa'"),
        ("variables.sigma.low=0", "variables.sigma.low = 0: Input should be greater than 0"),
        ("variables.rate.high=1.0", "variables.rate.high = 1.0: Input should be less than 1"),
        ("variables.rate={low: 0.9, high: 0.6}", "variables.rate: low = 0.9 must be below high = 0.6"),
        ("resources.gpu=1.5", "resources.gpu = 1.5: fractional GPUs must be at most 1"),
        ("resources.pack=0", "resources.pack = 0: Input should be greater than or equal to 1"),
        ("reference_point=[0, 2]", "reference_point.1 = 2: Input should be less than or equal to 1"),
    ],
)
def test_bad_space_values_name_the_field(override, expected, tmp_path):
    with pytest.raises(ConfigError) as err:
        prepare_evolution(
            "search_spaces/evolve_digits.yaml",
            [override],
            tracking_uri=f"sqlite:///{tmp_path}/m.db",
            results_root=tmp_path,
        )
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_spaces_validate_on_digits(path, tmp_path):
    prepared = prepare_evolution(
        path,
        ["train.dataset=digits", "resources.gpu=0", "resources.cpu=1"],
        tracking_uri=f"sqlite:///{tmp_path}/m.db",
        results_root=tmp_path,
    )
    assert prepared.name == path.stem.replace("_", "-")
    assert prepared.state is None


def test_cifar_space_without_data_names_the_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"data_dir = 'data'.*cifar-10-batches-py"):
        prepare_evolution(
            ROOT / "search_spaces" / "evolve_resnet18_cifar10.yaml",
            tracking_uri=f"sqlite:///{tmp_path}/m.db",
            results_root=tmp_path,
        )


def test_cli_bad_space_exits_2_with_one_line_without_ray(tmp_path):
    cmd = [
        sys.executable, "-m", "tuneprune.cli", "evolve", "search_spaces/evolve_digits.yaml",
        "--results-dir", str(tmp_path), "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--set", "samples=0",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "tuneprune evolve: error: samples = 0: Input should be greater than or equal to 1"
    assert not list(tmp_path.iterdir())


def test_from_run_finds_a_trial_in_the_store_a_search_recorded(indexed_model_run, tmp_path):
    """``--from-run`` of a search's trial from another directory, without ``--tracking-uri``: the run is looked for in
    the stores the index of searches records, as ``prune-stochastic --from-run`` does (the old code looked only in the
    evolution's own store, ``./mlruns.db``, and refused the run)."""
    prepared = prepare_evolution(ROOT / "search_spaces" / "evolve_digits.yaml", from_run=indexed_model_run)
    assert prepared.dense is not None
    assert prepared.tracking_uri == f"sqlite:///{tmp_path / 'elsewhere' / 'mlruns.db'}"


def test_a_generation_whose_logging_fails_leaves_no_child_run_running(tmp_path):
    """A generation's child run opened, then its logging stopped (Ctrl-C, a store error): on the old code it stayed
    RUNNING after the command had ended. Its population CSV missing makes the store stop here."""
    from tuneprune.evolution.runner import _log_generation
    from tuneprune.tracking import RunTracker

    tracker = RunTracker(f"sqlite:///{tmp_path}/mlruns.db", "tuneprune")
    parent_id = tracker.start_parent("evo", "evolution", resume=False)
    with pytest.raises(Exception, match=r"gen-001\.csv"):
        _log_generation(tracker, parent_id, EvolutionSpace(), 1, [], [], 0.0, tmp_path / "gen-001.csv")
    (child,) = tracker.children(parent_id)
    assert child.info.status == "FAILED"


@pytest.mark.parametrize(
    ("source", "overrides", "expected"),
    [
        ({"checkpoint": "missing.pt"}, [], r"missing.pt: checkpoint or model file not found"),
        ({"from_run": "0123456789abcdef"}, [], r"--from-run 0123456789abcdef: "),
        ({}, ["variables.groups={early: [features.3]}"], r"layer 'features.7' is in no group"),
        ("dense", ["target.exclude=[layer4]"], r"target.exclude: no module named 'layer4'"),
        pytest.param(
            {},
            ["train.device=cuda"],
            r"^train.device = 'cuda': CUDA is not available on this machine, allowed here: auto, cpu$",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here"),
        ),
    ],
    ids=[
        "missing-checkpoint",
        "unknown-run",
        "groups-of-the-trained-model",
        "exclude-of-the-checkpoint",
        "cuda-without-cuda",
    ],
)
def test_the_dense_model_and_its_layers_are_checked_before_the_evolution_starts(
    source, overrides, expected, dense_digits, tmp_path
):
    """Before any MLflow run: on the old code a missing model, a misnamed layer or ``train.device: cuda`` without CUDA (the
    dense model to be trained) failed the started evolution's parent run, and that name then needed --resume."""
    given = {"checkpoint": dense_digits[0]} if source == "dense" else source
    with pytest.raises(ConfigError, match=expected):
        prepare_evolution(
            "search_spaces/evolve_digits.yaml",
            ["train.epochs=1", *overrides],
            tracking_uri=f"sqlite:///{tmp_path}/m.db",
            results_root=tmp_path,
            **given,
        )
    assert not (tmp_path / "evolve-digits").exists()
