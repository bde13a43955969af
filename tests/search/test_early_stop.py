"""The early-stopping rule: Ray Tune's ASHA for one objective, per grid point; non-dominated ranking for several."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket

from tuneprune.search.early_stop import AshaRule
from tuneprune.search.rung_ranking import rung_ranks, stops
from tuneprune.search.space import load_space
from tuneprune.search.studies import distributions, make_sampler


@pytest.mark.parametrize(("grace", "eta", "max_t", "mode"), [(1, 2, 4, "max"), (1, 3, 9, "min"), (2, 2, 8, "max")])
def test_one_objective_decisions_equal_rays_asha_per_grid_point(grace, eta, max_t, mode):
    rng = random.Random(grace * 100 + max_t)
    ours = AshaRule(grace, eta, max_t, [mode])
    brackets = {study: _Bracket(grace, max_t, eta, 0) for study in ("g0", "g1")}  # one Ray bracket per grid point
    sign = 1 if mode == "max" else -1
    running = {(study, f"{study}-{i:03d}"): 0 for study in brackets for i in range(12)}
    stops_seen = 0
    while running:  # trials of both grid points report in random interleavings
        study, key = rng.choice(sorted(running))
        running[study, key] += 1
        epoch = running[study, key]
        value = rng.random() + (5.0 if study == "g1" else 0.0)  # g1 is another problem, on another scale
        stop = ours.should_stop(study, key, epoch, [value])
        assert stop == (
            brackets[study].on_result(Trial("", trial_id=key, stub=True), epoch, sign * value) == TrialScheduler.STOP
        )
        stops_seen += stop
        if stop or epoch == max_t:
            del running[study, key]
    assert stops_seen > 0


def test_a_missing_or_nan_value_never_stops_a_trial_of_one_objective():
    rule = AshaRule(1, 2, 4, ["max"])
    assert not rule.should_stop("g0", "a", 1, [0.9])
    assert not rule.should_stop("g0", "b", 1, [None])
    assert not rule.should_stop("g0", "c", 1, [float("nan")])
    assert rule.should_stop("g0", "d", 1, [0.1])
    assert not rule.should_stop("g1", "e", 1, [0.1])  # another grid point: nothing recorded there yet


def test_the_rule_orders_a_front_as_configured():
    """Front 0 is (0.875, 0.5), (0.625, 0.75); the last trial (0.375, 0.5) shares front 1 with
    (0.875, 0.125). Both ends of a front have infinite crowding distance, so the two tie and
    2 of 4 recorded trials are ahead (not > 1/2): it goes on. The epsilon-net starts at the
    best first objective, (0.875, 0.125), so 3 of 4 are ahead: it stops."""
    recorded = [[0.875, 0.125], [0.625, 0.75], [0.875, 0.5], [0.375, 0.25]]
    decisions = {}
    for order in ("crowding", "epsilon_net"):
        rule = AshaRule(1, 2, 4, ["max", "max"], front_order=order)
        for i, values in enumerate(recorded):
            rule.should_stop("g0", f"g0-{i:03d}", 1, values)
        decisions[order] = rule.should_stop("g0", "g0-004", 1, [0.375, 0.5])
    assert decisions == {"crowding": False, "epsilon_net": True}


def test_the_tables_survive_a_restart_and_a_stop_is_replayed(tmp_path):
    path = tmp_path / "early_stop.json"
    rule = AshaRule(1, 2, 4, ["max", "min"], str(path))
    assert not rule.should_stop("g0", "g0-000", 1, [0.9, 1.0])
    assert rule.should_stop("g0", "g0-001", 1, [0.5, 2.0])
    again = AshaRule(1, 2, 4, ["max", "min"], str(path))  # a resumed search
    assert again.tables == rule.tables == json.loads(path.read_text())["tables"]
    assert again.should_stop("g0", "g0-001", 2, [0.99, 0.1])  # stopped at rung 1 before: the same decision
    assert not again.should_stop("g0", "g0-000", 1, [0.0, 9.0])  # recorded at rung 1 already: not judged twice
    assert not again.should_stop("g0", "g0-002", 1, [0.95, 1.5])  # not dominated by g0-000: a front of its own


def test_the_tables_are_read_back_by_their_own_search_only(tmp_path):
    """A driver of the search that wrote the tables (--resume, --join: its parent run) takes their decisions; a
    driver of another search of that name, run into the same results directory with fresh stores, takes none."""
    path = str(tmp_path / "early_stop.json")
    rule = AshaRule(1, 2, 4, ["max"], path, search="run-a")
    assert not rule.should_stop("g0", "g0-000", 1, [0.9])
    assert rule.should_stop("g0", "g0-001", 1, [0.5])
    assert AshaRule(1, 2, 4, ["max"], path, search="run-a").tables == rule.tables  # the same search
    other = AshaRule(1, 2, 4, ["max"], path, search="run-b")
    assert other.tables == {}
    assert not other.should_stop("g0", "g0-001", 1, [0.5])  # its own g0-001, judged on its own rung


def test_drivers_of_one_search_share_their_rungs_through_the_file(tmp_path):
    """Joined drivers sharing a results directory each run a rule: a trial is judged against every trial of its grid
    point recorded before it, whichever driver ran it (formulas §10.9), and the file keeps every driver's records
    (a resumed search reads them all back)."""
    path = tmp_path / "early_stop.json"
    first, second = (AshaRule(1, 2, 4, ["max"], str(path), search="run-a") for _ in range(2))  # started together
    assert not first.should_stop("g0", "g0-000", 1, [0.9])
    assert second.should_stop("g0", "g0-001", 1, [0.5])  # below the first driver's trial: stopped
    assert not first.should_stop("g0", "g0-002", 1, [0.95])
    assert list(json.loads(path.read_text())["tables"]["g0"]["1"]) == ["g0-000", "g0-001", "g0-002"]


# --- the multi-objective ranking against a reference written from the definitions ---


def _dominates(a, b, directions) -> bool:
    better = [(x > y if d == "max" else x < y) for x, y, d in zip(a, b, directions, strict=True)]
    worse = [(x < y if d == "max" else x > y) for x, y, d in zip(a, b, directions, strict=True)]
    return any(better) and not any(worse)


def _reference_fronts(points, directions) -> list[float]:
    """Front of each point by peeling the non-dominated finite points; non-finite points: infinity."""
    front = [math.inf] * len(points)
    left = {i for i, p in enumerate(points) if all(math.isfinite(v) for v in p)}
    level = 0
    while left:
        top = {i for i in left if not any(_dominates(points[j], points[i], directions) for j in left)}
        for i in top:
            front[i] = level
        left -= top
        level += 1
    return front


def _reference_ranks(points, directions) -> list[int]:
    """Fronts by peeling the non-dominated points; crowding distance by its definition; rank = points strictly ahead."""
    n = len(points)
    finite = [all(math.isfinite(v) for v in p) for p in points]
    front = _reference_fronts(points, directions)
    crowd = [0.0] * n
    for f in {front[i] for i in range(n) if finite[i]}:
        members = [i for i in range(n) if front[i] == f]
        for j in range(len(directions)):
            column = [points[i][j] for i in members]
            low, high = min(column), max(column)
            if high == low:
                continue
            for i in members:
                v = points[i][j]
                if v in (low, high):
                    crowd[i] += math.inf
                else:
                    crowd[i] += (min(c for c in column if c > v) - max(c for c in column if c < v)) / (high - low)
    return [
        sum(1 for j in range(n) if front[j] < front[i] or (front[j] == front[i] and crowd[j] > crowd[i]))
        for i in range(n)
    ]


def _reference_epsilon_net_ranks(points, directions) -> list[int]:
    """Fronts as above; inside one, the greedy epsilon-net by its definition; rank = points strictly ahead."""
    n = len(points)
    fronts = _reference_fronts(points, directions)
    signs = [1.0 if d == "max" else -1.0 for d in directions]
    position = [0] * n
    for f in {fronts[i] for i in range(n) if fronts[i] != math.inf}:
        members = [i for i in range(n) if fronts[i] == f]
        rewards = {i: tuple(s * v for s, v in zip(signs, points[i], strict=True)) for i in members}
        distinct = sorted(set(rewards.values()))
        spread = [max(c) - min(c) for c in zip(*distinct, strict=True)]
        scaled = {r: [v / s if s > 0 else 0.0 for v, s in zip(r, spread, strict=True)] for r in distinct}
        order = [max(distinct)]  # the best of the first objective, ties by the next
        nearest = dict.fromkeys(distinct, math.inf)  # squared distance to the nearest row taken
        while len(order) < len(distinct):
            for r in distinct:
                gap = sum((a - b) ** 2 for a, b in zip(scaled[r], scaled[order[-1]], strict=True))
                nearest[r] = min(nearest[r], gap)
            order.append(max((r for r in distinct if r not in order), key=lambda r: (nearest[r], r)))
        for i in members:
            position[i] = order.index(rewards[i])
    return [
        sum(1 for j in range(n) if fronts[j] < fronts[i] or (fronts[j] == fronts[i] and position[j] < position[i]))
        for i in range(n)
    ]


def _random_rung(rng: np.random.Generator, objectives: int) -> np.ndarray:
    n = int(rng.integers(1, 12))
    points = rng.integers(0, 5, size=(n, objectives)).astype(float) / 4  # a coarse grid: ties and duplicates
    if rng.random() < 0.5:
        points = np.vstack([points, points[rng.integers(0, n, size=2)]])
    if rng.random() < 0.3:
        points[rng.integers(0, len(points)), rng.integers(0, objectives)] = rng.choice([np.nan, np.inf, -np.inf])
    return points


@pytest.mark.parametrize(
    ("front_order", "reference_ranks"), [("crowding", _reference_ranks), ("epsilon_net", _reference_epsilon_net_ranks)]
)
def test_ranks_and_decisions_equal_the_reference_on_1000_random_rungs(front_order, reference_ranks):
    rng = np.random.default_rng(21)
    for case in range(1000):
        objectives = 2 + case % 2
        directions = list(rng.choice(["max", "min"], size=objectives))
        points = _random_rung(rng, objectives)
        reference = reference_ranks(points.tolist(), directions)
        assert rung_ranks(points, directions, front_order).tolist() == reference, (points, directions)
        if len(points) > 1:
            eta = float(rng.choice([2, 3, 4]))
            expected = reference[-1] / (len(points) - 1) > 1 / eta
            assert stops(points[:-1].tolist(), points[-1].tolist(), directions, eta, front_order) == expected


@pytest.mark.parametrize("front_order", ["crowding", "epsilon_net"])
@pytest.mark.parametrize("objectives", [2, 3])
def test_a_point_dominating_the_rung_is_never_stopped_wherever_it_lies(objectives, front_order):
    rng = np.random.default_rng(objectives)
    directions = ["max", "min", "max"][:objectives]
    signs = np.array([1.0 if d == "max" else -1.0 for d in directions])
    for _ in range(200):
        points = rng.random((int(rng.integers(2, 20)), objectives))
        best = signs * (1.5 + rng.random(objectives))  # better than every point in every objective
        at = int(rng.integers(0, len(points) + 1))
        rung = np.insert(points, at, best, axis=0)
        assert rung_ranks(rung, directions, front_order)[at] == 0  # its rank, not its place in a sorted order
        assert not stops(points.tolist(), best.tolist(), directions, 2.0, front_order)
        worst = -signs * (1.5 + rng.random(objectives))  # dominated by every point
        assert stops(points.tolist(), worst.tolist(), directions, 2.0, front_order)
        assert stops(points.tolist(), [np.nan] * objectives, directions, 2.0, front_order)  # non-finite ranks last


def test_one_objective_is_rays_cutoff():
    assert not stops([[0.5]], [0.5], ["max"], 2.0)
    assert stops([[0.5]], [0.4], ["max"], 2.0)
    assert stops([[0.5]], [0.6], ["min"], 2.0)
    recorded = [[v] for v in (0.1, 0.2, 0.3, 0.4)]
    cutoff = np.percentile([0.1, 0.2, 0.3, 0.4], 100 * (1 - 1 / 3))
    assert stops(recorded, [cutoff - 1e-9], ["max"], 3.0)
    assert not stops(recorded, [cutoff], ["max"], 3.0)


@pytest.mark.parametrize("kind", ["tpe", "nsga2"])
def test_the_multi_objective_samplers_go_on_sampling_after_pruned_trials(kind):
    """A stopped trial is told PRUNED, without values; the samplers of two-objective searches take that
    past TPE's start-up trials and NSGA-II's first generations (population 50)."""
    space = load_space(
        {
            "name": "pruned",
            "base": {"model": "small_cnn", "dataset": "digits", "sparsity": {"target": 0.9}},
            "params": {"lr": {"type": "float", "low": 0.01, "high": 0.1}},
            "objectives": {"val_acc": "max", "sparsity": "max"},
            "sampler": {"type": kind, "seed": 0},
        }
    )
    study = optuna.create_study(directions=space.directions, sampler=make_sampler(space))
    for i in range(120):
        trial = study.ask(distributions(space))
        if i % 3 == 0:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            lr = trial.params["lr"]
            study.tell(trial, [lr, 1 - lr])
    states = [t.state for t in study.trials]
    assert states.count(TrialState.PRUNED) == 40
    assert states.count(TrialState.COMPLETE) == 80
    assert all(0.01 <= t.params["lr"] <= 0.1 for t in study.trials)
