"""Per-trial heartbeats: a driver that joins a search claims the trials of a dead driver, never a live one's."""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState

from tuneprune.search import studies
from tuneprune.search.space import load_space

BASE = {"model": "small_cnn", "dataset": "digits", "epochs": 3, "batch_size": 64}
SPACE = {"base": BASE, "params": {"lr": {"type": "float", "low": 0.01, "high": 0.3}}, "num_samples": 3}


@pytest.fixture
def fast_heartbeats(monkeypatch):
    """Heartbeats every second, stale after 3 s without one (SQLite's clock counts whole seconds)."""
    monkeypatch.setattr(studies, "HEARTBEAT_INTERVAL_S", 1)
    monkeypatch.setattr(studies, "GRACE_PERIOD_S", 3)


def test_a_joined_driver_claims_a_dead_drivers_trial_not_a_live_ones(tmp_path, fast_heartbeats):
    space = load_space(SPACE)
    distributions = studies.distributions(space)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    (live,) = studies.open_studies(space, "hb", url, shared=True)
    (dying,) = studies.open_studies(space, "hb", url, shared=True)
    kept = live.ask(distributions)
    live.set_user_attrs(kept.number, {"key": "g0-000", "name": "g0-000 lr=..."})
    lost = dying.ask(distributions)
    attrs = {"key": "g0-001", "mlflow_run_id": "run-of-g0-001", studies.CHECKPOINT_EPOCH: 2, "name": "g0-001 lr=..."}
    dying.set_user_attrs(lost.number, attrs)
    time.sleep(5)  # the live driver's thread beats every second: its trial stays fresh
    assert dying.heartbeats is not None
    dying.heartbeats.close()  # the dying driver dies: no more heartbeats

    (joined,) = studies.open_studies(space, "hb", url, shared=True)
    assert joined.remaining == 1  # nothing stale yet: two of three taken, one new trial to ask
    running = (optuna.trial.TrialState.RUNNING,)
    assert [t.number for t in joined.study.get_trials(states=running)] == [kept.number, lost.number]
    time.sleep(5)  # the dead driver's trial goes stale, the live one's does not (and a claim is due again)
    assert joined.remaining == 2  # the claimed orphan queued again, and one new: still two of three taken
    by_number = {t.number: t for t in joined.study.get_trials()}
    assert by_number[kept.number].state == optuna.trial.TrialState.RUNNING
    assert by_number[lost.number].state == optuna.trial.TrialState.FAIL
    continued = joined.ask(distributions)  # the queued orphan first, with what it needs to go on
    carried = {k: v for k, v in attrs.items() if k != "name"}  # named again when handed out
    assert continued.user_attrs == {**carried, studies.CONTINUES: lost.number}
    assert continued.params == lost.params
    assert joined.remaining == 1
    assert live.remaining == 1  # every driver counts the same
    for gs in (live, joined):
        assert gs.heartbeats is not None
        gs.heartbeats.close()


def test_a_driver_living_through_a_storage_outage_keeps_its_trials():
    """A driver waits up to ``STORAGE_PATIENCE_S`` for an unreachable storage; its heartbeats resume within one
    interval after, before the grace period lets another driver claim its trials."""
    assert studies.GRACE_PERIOD_S > studies.STORAGE_PATIENCE_S + studies.HEARTBEAT_INTERVAL_S


def test_a_resumed_search_queues_again_a_claim_its_claimer_did_not_queue(tmp_path):
    """A driver that died between claiming an orphan (RUNNING -> FAIL) and queuing it again left a FAIL trial
    with no ``metrics`` and no continuation: ``--resume`` queues it; a trial told FAIL (with its metrics) stays."""
    space = load_space(SPACE)
    distributions = studies.distributions(space)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    (first,) = studies.open_studies(space, "lost", url)
    failed = first.ask(distributions)
    first.set_user_attrs(failed.number, {"key": "g0-000", "metrics": {"epoch": 1}, "error": "diverged"})
    first.tell(failed.number, state=optuna.trial.TrialState.FAIL)
    lost = first.ask(distributions)
    first.set_user_attrs(lost.number, {"key": "g0-001", "mlflow_run_id": "run-of-g0-001", "name": "g0-001"})
    assert first.storage is not None
    first.storage.set_trial_state_values(first._trial_id(lost.number), optuna.trial.TrialState.FAIL)  # the claim
    assert first.heartbeats is not None
    first.heartbeats.close()  # ... and its driver dies before it queues the trial again

    (resumed,) = studies.open_studies(space, "lost", url)
    assert resumed.remaining == 2  # the lost claim queued again, and one new trial: the failed one counts
    continued = resumed.ask(distributions)
    assert continued.user_attrs == {"key": "g0-001", "mlflow_run_id": "run-of-g0-001", studies.CONTINUES: lost.number}
    assert continued.params == lost.params
    assert resumed.remaining == 1
    (again,) = studies.open_studies(space, "lost", url)  # a second resume: the continuation is claimed, once
    continuing = [t.user_attrs.get(studies.CONTINUES) for t in again.study.get_trials()]
    assert continuing == [None, None, lost.number, continued.number]
    assert again.remaining == 2
    for gs in (resumed, again):
        assert gs.heartbeats is not None
        gs.heartbeats.close()


def test_a_joined_driver_runs_the_orphans_it_claims_after_it_started(ray_session, tmp_path, fast_heartbeats):
    """A ``--join`` driver that starts while a dead driver's trial is not yet stale counts it as taken; once it goes
    stale the driver claims it and must run it too, not end with it RUNNING because Tune was told at the start how
    many trials the driver would run."""
    import threading

    from tuneprune.search import prepare_search, run_search
    from tuneprune.search.studies import open_storage

    base = {**BASE, "epochs": 8}  # trains well past the grace period
    space = {**SPACE, "base": base, "name": "late", "num_samples": 2, "max_concurrent": 1, "resources": {"cpu": 1}}
    tracking, storage = f"sqlite:///{tmp_path / 'mlruns.db'}", f"sqlite:///{tmp_path / 'optuna.db'}"
    prepared = prepare_search(
        "late.yaml", document=space, tracking_uri=tracking, storage_url=storage, results_root=tmp_path, join=True
    )
    (dying,) = studies.open_studies(prepared.space, "late", storage, shared=True)
    lost = dying.ask(studies.distributions(prepared.space))
    dying.set_user_attrs(lost.number, {"key": "g0-000", "name": "g0-000 lr=..."})

    def die_once_the_search_runs() -> None:  # the dying driver's heartbeats go on until the joined one has started
        while all("name" not in t.user_attrs for t in dying.study.get_trials() if t.number != lost.number):
            time.sleep(0.2)
        assert dying.heartbeats is not None
        dying.heartbeats.close()

    threading.Thread(target=die_once_the_search_runs, daemon=True).start()
    summary = run_search(prepared, progress=False)
    assert sorted((t["key"], t["state"]) for t in summary.trials) == [("g0-000", "COMPLETE"), ("g0-001", "COMPLETE")]
    trials = optuna.load_study(study_name="late", storage=open_storage(storage)).trials
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
