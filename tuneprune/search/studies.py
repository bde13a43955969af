"""Optuna studies of a search: one per grid point, in a durable RDB storage, the search's record of truth.

A resumed search re-runs the trials a dead driver left RUNNING before asking for new ones.
Such an orphan is claimed by one driver only (its RUNNING -> FAIL is row-locked), which
queues it again (:func:`requeue`) for any driver's ``study.ask`` to pop once. A lone driver
claims every RUNNING trial; drivers sharing a study only those whose heartbeats stopped.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from tuneprune.output.progress import say
from tuneprune.search.heartbeats import DRIVER_ENDED, GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, Heartbeats
from tuneprune.search.space import CategoricalParam, FloatParam, SearchSpace, check_sampler_seed, point_label
from tuneprune.shared.config import ConfigError, trained_fields

ENDED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
CHECKPOINT_EPOCH = "checkpoint_epoch"  # user attribute: the epoch of a running trial's latest checkpoint
CONTINUES = "continues"  # user attribute of a claimed orphan queued again: the number of the trial it continues
STORAGE_PATIENCE_S = 300.0  # how long the driver waits for an unreachable storage before the search fails
T = TypeVar("T")
SCHEMA_LOCK_KEY = 0x7475_6E65_7072_756E  # b"tuneprun": the advisory lock held while a storage's schema is made
RUN_CONFIG = "run_config"  # study user attribute: its grid point's run config (JSON, :func:`point_config`)
GRID_INDEX = "grid_index"  # study user attribute: its grid point's index (grid_indices), the g<i> of its trials' keys


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The Optuna storage at ``url``; its schema is created once, however many drivers open a new database together.

    ``RDBStorage(url)`` creates the schema by look-then-CREATE/INSERT: drivers opening a fresh
    database at once would all create, and all but one fail with a UniqueViolation. On
    PostgreSQL it is therefore built in a transaction holding
    ``pg_advisory_xact_lock(SCHEMA_LOCK_KEY)``; other databases (SQLite: one file on one
    machine) are opened as they are. Heartbeats are on, a stale trial is queued again
    (:func:`requeue`), and Optuna's warnings that heartbeats are experimental and meant for
    ``Study.optimize`` are silenced: a driver records them itself.
    """
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    warnings.filterwarnings(
        "ignore", message=".*(heartbeat_interval|fail_stale_trials)", category=optuna.exceptions.ExperimentalWarning
    )
    heartbeats: dict[str, Any] = {
        "heartbeat_interval": HEARTBEAT_INTERVAL_S,
        "grace_period": GRACE_PERIOD_S,
        "heartbeat_stale_trial_callback": requeue,
    }
    if sqlalchemy.make_url(url).get_backend_name() != "postgresql":
        return optuna.storages.RDBStorage(url, **heartbeats)
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.begin() as lock:
            lock.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            # pool_pre_ping: a connection the pool kept across a server restart is tested and replaced
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, **heartbeats)
    finally:
        engine.dispose()


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue the claimed orphan ``trial`` (FAIL now) to run again, with its params and user attributes less its
    ``name`` (set again when handed out) and :data:`DRIVER_ENDED`, plus ``continues``: its number. Any driver's next
    ``study.ask`` pops it once (row-locked) and continues that key's checkpoint and MLflow run."""
    attrs = {k: v for k, v in trial.user_attrs.items() if k not in ("name", DRIVER_ENDED)}
    study.enqueue_trial(trial.params, user_attrs={**attrs, CONTINUES: trial.number})


def claimed(trials: list[FrozenTrial]) -> set[int]:
    """The numbers of the claimed orphans among ``trials``: FAIL, and continued by a trial queued in their place."""
    return {t.user_attrs[CONTINUES] for t in trials if CONTINUES in t.user_attrs}


LOST_CONNECTION = (
    sqlalchemy.exc.OperationalError,  # refused, or closed by the server
    sqlalchemy.exc.InterfaceError,  # the driver's connection object already closed
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.PendingRollbackError,  # a transaction a lost connection left invalid
)


def _chain(err: BaseException | None) -> list[BaseException]:
    """``err`` and the exceptions it was raised from or during (``__cause__``, ``__context__``), nearest first."""
    chain: list[BaseException] = []
    while err is not None and err not in chain and len(chain) < 8:
        chain.append(err)
        err = err.__cause__ or err.__context__
    return chain


def unreachable(err: BaseException) -> bool:
    """Whether ``err`` says the database could not be reached (a lost or refused connection, or what it left
    behind), directly or behind Optuna's ``StorageInternalError``."""
    return any(
        isinstance(error, LOST_CONNECTION)
        or (isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated)
        for error in _chain(err)
    )


def retry_unreachable(
    operation: Callable[[], T], what: str, patience_s: float = STORAGE_PATIENCE_S, retry: Callable[[], T] | None = None
) -> T:
    """``operation()``, run again (``retry()`` when given) while the storage is unreachable (a database restarting),
    for up to ``patience_s`` seconds with waits of 0.5, 1, 2 ... 10 s; other errors, and the last one, propagate."""
    started = time.monotonic()
    wait = 0.5
    attempt = operation
    while True:
        try:
            return attempt()
        except Exception as err:
            if not unreachable(err) or time.monotonic() - started + wait > patience_s:
                raise
            cause = type(_chain(err)[-1]).__name__
            say(f"the Optuna storage is unreachable while {what} ({cause}); trying again in {wait:g} s")
            time.sleep(wait)
            wait = min(2 * wait, 10.0)
            attempt = retry or operation


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """Optuna distributions of the searched params."""
    out: dict[str, BaseDistribution] = {}
    for path, p in space.params.items():
        if isinstance(p, FloatParam):
            out[path] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
        elif isinstance(p, CategoricalParam):
            out[path] = CategoricalDistribution(p.choices)
        else:
            out[path] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
    return out


def sampler_seed(space: SearchSpace, offset: int = 0, asked: int = 0) -> int:
    """The seed of a grid point's sampler: ``seed + offset`` (one offset per grid point) for a new study; for one
    already holding ``asked`` trials (a resumed or joined search) a seed drawn from all three, so that it does not
    draw the values of the study's first trials again."""
    if asked:
        return int(np.random.SeedSequence([space.sampler.seed, offset, asked]).generate_state(1)[0])
    return space.sampler.seed + offset


def make_sampler(space: SearchSpace, offset: int = 0, asked: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler the space names, seeded with :func:`sampler_seed`."""
    samplers: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
        "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True),
        "nsga2": optuna.samplers.NSGAIISampler,
        "cmaes": optuna.samplers.CmaEsSampler,
        "gp": optuna.samplers.GPSampler,
        "random": optuna.samplers.RandomSampler,
    }
    return samplers[space.sampler.type](seed=sampler_seed(space, offset, asked))


class FirstAskSeeded(optuna.samplers.BaseSampler):
    """The sampler of a study other drivers ask too (``--join``): :func:`make_sampler`'s, made when this driver's
    first trial is asked, as for a study holding that trial's number of trials.

    Each trial number goes to one driver, so drivers finding a new study empty at once draw values of their own,
    and a lone driver draws what a lone search would. The seed is recorded as the study's user attribute
    ``sampler_seed_from_trial_<number>``.
    """

    def __init__(self, space: SearchSpace, offset: int) -> None:
        self.space, self.offset = space, offset
        self._sampler: optuna.samplers.BaseSampler | None = None

    @property
    def sampler(self) -> optuna.samplers.BaseSampler:
        assert self._sampler is not None, "a trial is asked (before_trial) before anything is sampled or told"
        return self._sampler

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self._sampler is None:
            seed = sampler_seed(self.space, self.offset, trial.number)
            study.set_user_attr(f"sampler_seed_from_trial_{trial.number}", seed)
            self._sampler = make_sampler(self.space, self.offset, trial.number)
        self.sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.sampler.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self.sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()


def study_name(search_name: str, grid_point: dict[str, Any]) -> str:
    if not grid_point:
        return search_name
    return f"{search_name}[{','.join(f'{k}={v}' for k, v in grid_point.items())}]"


def study_names(search_name: str, storage: optuna.storages.BaseStorage) -> list[str]:
    """The studies of the search ``search_name`` in ``storage`` (one per grid point)."""
    return [n for n in optuna.get_all_study_names(storage) if n == search_name or n.startswith(f"{search_name}[")]


def grid_indices(space: SearchSpace, name: str, storage: optuna.storages.BaseStorage) -> list[int]:
    """The grid index of each grid point of ``space`` in the search ``name`` (the ``g<i>`` of its trials' keys, its
    sampler's seed offset), in grid order: the one its study records (:data:`GRID_INDEX`), or for a study made before
    that record and holding trials, its place in the grid; a new point takes the next index no study of the search
    holds (one past the largest, a dropped point's included), so a new search's points take 0, 1, 2 ... and an index
    is used once. Drivers opening a search with one space at once compute the same indices. A ``sampler.seed`` the
    largest takes past 32 bits is refused in one line (:func:`~tuneprune.search.space.check_sampler_seed`)."""
    places = {study_name(name, point): i for i, point in enumerate(space.grid_points())}
    held: dict[str, int] = {}
    for study_name_ in study_names(name, storage):
        study_id = storage.get_study_id_from_name(study_name_)
        if (index := storage.get_study_user_attrs(study_id).get(GRID_INDEX)) is not None:
            held[study_name_] = index
        elif study_name_ in places and storage.get_n_trials(study_id):  # made before the record: its place
            held[study_name_] = places[study_name_]
    free = itertools.count(max(held.values(), default=-1) + 1)
    indices = [held[n] if n in held else next(free) for n in places]
    check_sampler_seed(space.sampler.seed, max(indices))
    return indices


def search_trials(
    name: str, storage: optuna.storages.BaseStorage, states: tuple[TrialState, ...] | None = None
) -> Iterator[FrozenTrial]:
    """The trials of every study of the search ``name`` in ``storage`` (of ``states`` only, when given)."""
    for study_name_ in study_names(name, storage):
        study = optuna.load_study(study_name=study_name_, storage=storage)
        yield from study.get_trials(deepcopy=False, states=states)


def drivers_running(name: str, storage_url: str) -> bool:
    """Whether a driver of the search ``name`` runs: a trial of its studies is RUNNING, and not left by a driver that
    ended (:data:`DRIVER_ENDED`). A driver killed with SIGKILL marks nothing: it counts as running until its trials
    are claimed (docs/cluster.md, "Several drivers, one study")."""
    running = search_trials(name, open_storage(storage_url), (TrialState.RUNNING,))
    return any(DRIVER_ENDED not in trial.user_attrs for trial in running)


def logged_run(name: str, storage: optuna.storages.BaseStorage) -> str | None:
    """The MLflow run id of a trial of the search ``name`` (a child of its parent run), None if none has one."""
    return next(
        (t.user_attrs["mlflow_run_id"] for t in search_trials(name, storage) if "mlflow_run_id" in t.user_attrs), None
    )


def check_space(space: SearchSpace, name: str, storage: optuna.storages.BaseStorage, shared: bool = False) -> None:
    """Refuse, in one line, a space the studies of the search ``name`` cannot take (``--join``, ``--resume``): other
    objectives, or a param distribution incompatible with one a trial drew from (else the first ask fails once Ray
    has started); for a driver joining it (``shared``), another budget than the one the studies of its grid points
    record (a dropped point's study keeps the budget it ran with); another run config of a grid point
    (:func:`check_run_config`); and a ``sampler.seed`` that a grid point's sampler takes past 32 bits at the grid index
    it has in this search (:func:`grid_indices`)."""
    wanted = distributions(space)
    grid_indices(space, name, storage)
    points = {study_name(name, point): point for point in space.grid_points()}  # a point dropped is not run: unchecked
    for study_name_ in study_names(name, storage):
        study = optuna.load_study(study_name=study_name_, storage=storage)
        recorded = json.loads(study.user_attrs.get("objectives", "null"))  # set by open_studies, values in order
        if recorded is not None and list(recorded.items()) != list(space.objectives.items()):
            raise ConfigError(f"objectives: the search {name!r} has {recorded}; this space gives {space.objectives}")
        if study_name_ in points and RUN_CONFIG in study.user_attrs:  # none in a study made before it was recorded
            check_run_config(json.loads(study.user_attrs[RUN_CONFIG]), space, points[study_name_], name)
        budget = study.user_attrs.get("num_samples", space.num_samples)  # set by open_studies, of the points it runs
        if shared and study_name_ in points and budget != space.num_samples:
            raise ConfigError(
                f"num_samples = {space.num_samples}: the search {name!r} has a budget of {budget} trials per grid "
                f"point, shared by its drivers; pass --num-samples {budget} to join it, or change the budget with "
                f"--resume --num-samples {space.num_samples} (without --join) while no driver of it runs"
            )
        for trial in study.get_trials(deepcopy=False):
            for param, drawn in trial.distributions.items():
                try:
                    if param in wanted:
                        optuna.distributions.check_distribution_compatibility(drawn, wanted[param])
                except ValueError as err:
                    raise ConfigError(
                        f"params.{param}: the search {name!r} drew it from {drawn}; this space gives {wanted[param]} "
                        f"({err})"
                    ) from None


def point_config(space: SearchSpace, point: dict[str, Any]) -> dict[str, Any]:
    """What grid point ``point`` trains, searched values aside: base, the grid values and the method, resolved."""
    return space.resolve(point, {}).model_dump(mode="json")


def differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """``(dotted path, old value, new value)`` of every field two configs set apart, in ``old``'s order; a key only
    one of them has (a field of another tuneprune version) is not compared."""
    for key in (k for k in old if k in new):
        if isinstance(old[key], dict) and isinstance(new[key], dict):
            yield from differences(old[key], new[key], f"{prefix}{key}.")
        elif old[key] != new[key]:
            yield f"{prefix}{key}", old[key], new[key]


def check_run_config(recorded: dict[str, Any], space: SearchSpace, point: dict[str, Any], name: str) -> None:
    """Refuse, in one line, a space that trains grid point ``point`` of the search ``name`` otherwise than its study
    ``recorded`` (:data:`RUN_CONFIG`), :data:`~tuneprune.shared.config.MACHINE_FIELDS` aside: its finished trials would
    be listed with configs they never ran, and a trial it left running would fail on its checkpoint."""
    for path, old, new in differences(trained_fields(recorded), trained_fields(point_config(space, point))):
        where = f"grid point {point_label(point)}" if point else "its trials"
        raise ConfigError(
            f"{path}: the search {name!r} ran {where} with {old!r}, this space gives {new!r}; give it the space "
            f"it ran, or run this space as a new search with another --name"
        )


@dataclass
class GridStudy:
    """The study of one grid point and its bookkeeping during a run, through Optuna's public API only."""

    index: int  # its grid index (grid_indices), not its place in the list of studies
    grid_point: dict[str, Any]
    study: optuna.Study
    budget: int
    storage: optuna.storages.BaseStorage | None = None  # the study's storage, as opened (open_storage)
    shared: bool = False  # other drivers ask trials of this study too (cluster mode, --join)
    heartbeats: Heartbeats | None = None  # of the trials this driver asked and has not told
    _taken: int | None = field(default=None, repr=False)  # trials counted in the budget, by a lone driver
    _waiting: int = field(default=0, repr=False)  # orphans queued again, among them
    _claimed_at: float = field(default=-math.inf, repr=False)  # time.monotonic() of the last claim_stale
    _study_id: int | None = field(default=None, repr=False)
    _trial_ids: dict[int, int] = field(default_factory=dict, repr=False)

    def _trial_id(self, number: int) -> int:
        """The storage's id of trial ``number`` (``get_trial_id_from_study_id_trial_number``), looked up once."""
        if number not in self._trial_ids:
            assert self.storage is not None, "a GridStudy writes through the storage it was opened with"
            if self._study_id is None:
                self._study_id = self.storage.get_study_id_from_name(self.study.study_name)
            self._trial_ids[number] = self.storage.get_trial_id_from_study_id_trial_number(self._study_id, number)
        return self._trial_ids[number]

    def set_user_attrs(self, number: int, attrs: dict[str, Any]) -> None:
        """Set user attributes of the trial ``number`` (RUNNING) through the storage."""
        assert self.storage is not None
        trial_id = self._trial_id(number)
        for key, value in attrs.items():
            self.storage.set_trial_user_attr(trial_id, key, value)

    def ask(self, space_distributions: dict[str, BaseDistribution]) -> optuna.Trial:
        """The next trial to hand out (an orphan queued again first: its user attributes tell what it continues);
        its heartbeats start."""
        trial = self.study.ask(space_distributions)
        if not self.shared and self._taken is not None:
            if CONTINUES in trial.user_attrs:
                self._waiting -= 1
            else:  # a new trial: none was queued (any more)
                self._waiting, self._taken = 0, self._taken + 1
        if self.heartbeats is not None:
            self.heartbeats.start(self._trial_id(trial.number))
        return trial

    def release(self, number: int) -> None:
        """No more heartbeats of trial ``number``: its end is told, or another driver claimed it."""
        if self.heartbeats is not None:
            self.heartbeats.stop(self._trial_id(number))

    def tell(self, number: int, values: float | list[float] | None = None, state: TrialState | None = None) -> None:
        """Tell the end of trial ``number`` (``study.tell``), its heartbeats stopped first."""
        self.release(number)
        self.study.tell(number, values, state=state)

    @property
    def remaining(self) -> int:
        """Trials still to hand out: the orphans queued again, then new ones up to the budget.

        The budget counts every trial of the study in any state but the claimed orphans (each
        continued by the trial queued in its place), so drivers sharing the study stop together
        at ``budget`` trials. A ``shared`` study first claims dead drivers' trials
        (:meth:`claim_stale`) and is read at every call; a lone driver reads it once and counts.
        """
        if self.shared:
            self.claim_stale()
        if self.shared or self._taken is None:
            trials = self.study.get_trials(deepcopy=False)
            self._waiting = sum(t.state == TrialState.WAITING for t in trials)
            self._taken = len(trials) - len(claimed(trials))
        return self._waiting + max(self.budget - self._taken, 0)

    def claim(self, numbers: list[int]) -> None:
        """Claim the RUNNING trials ``numbers`` as orphans: fail each (row-locked: of drivers claiming a trial at once
        one wins, as in ``fail_stale_trials``) and queue again those won."""
        assert self.storage is not None, "a GridStudy writes through the storage it was opened with"
        for number in numbers:
            trial_id = self._trial_id(number)
            try:
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # claimed by another driver, or ended
            requeue(self.study, self.storage.get_trial(trial_id))
        self._taken = None  # count again

    def claim_stale(self) -> None:
        """Claim the RUNNING trials whose heartbeats stopped (``optuna.storages.fail_stale_trials``, which calls
        :func:`requeue`), once per heartbeat interval at most."""
        if time.monotonic() - self._claimed_at >= HEARTBEAT_INTERVAL_S:
            self._claimed_at = time.monotonic()
            optuna.storages.fail_stale_trials(self.study)

    def requeue_lost_claims(self) -> None:
        """Queue again the claimed orphans whose claimer died before :func:`requeue`: FAIL without ``metrics`` and
        continued by no trial. A lone driver only: among drivers sharing the study it may be a claim in flight."""
        trials = self.study.get_trials(deepcopy=False)
        continued = claimed(trials)
        for trial in trials:
            if trial.state == TrialState.FAIL and "metrics" not in trial.user_attrs and trial.number not in continued:
                requeue(self.study, trial)
        self._taken = None  # count again

    def adopt_cut_short(self) -> None:
        """Claim the RUNNING trials without a ``name`` (set last when a trial is handed out) as orphans: what an ask
        cut short by a lost connection leaves, handed out by the retried ask instead of asking twice."""
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        self.claim([t.number for t in running if "name" not in t.user_attrs])


def open_studies(space: SearchSpace, name: str, storage_url: str, shared: bool = False) -> list[GridStudy]:
    """Create or load the study of every grid point. ``shared``: other drivers ask them too, and only trials whose
    heartbeats stopped are claimed; else every trial left RUNNING is claimed at once. A shared driver's space is
    checked (:func:`check_space`) against the studies already recorded before it records anything: a driver started
    with it may have made them since its start-up check."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url)
    heartbeats = Heartbeats(storage)
    points = list(zip(grid_indices(space, name, storage), space.grid_points(), strict=True))
    made = [
        optuna.create_study(
            storage=storage, study_name=study_name(name, point), directions=space.directions, load_if_exists=True
        )
        for _, point in points
    ]
    if shared and any(RUN_CONFIG in study.user_attrs for study in made):
        check_space(space, name, storage, shared=True)
    budgets = {study.user_attrs["num_samples"] for study in made if "num_samples" in study.user_attrs}
    if budgets and budgets != {space.num_samples}:  # a --resume with another budget: --num-samples or the space file's
        was = ", ".join(map(str, sorted(budgets)))
        say(f"num_samples: the budget changes from {was} to {space.num_samples} trials per grid point")
    studies = []
    for (computed, point), study in zip(points, made, strict=True):
        asked = len(study.get_trials(deepcopy=False))
        if not asked:  # a new study records them; an older one, its trials run, goes without
            recorded = study.user_attrs  # by another driver, opening the study first
            new = {GRID_INDEX: computed, RUN_CONFIG: json.dumps(point_config(space, point))}
            for key in (key for key in new if key not in recorded):
                study.set_user_attr(key, new[key])
        i = study.user_attrs.get(GRID_INDEX, computed)  # none in a study made before it was recorded: its place
        study.sampler = FirstAskSeeded(space, i) if shared else make_sampler(space, i, asked)
        study.set_user_attr("objectives", json.dumps(space.objectives))
        study.set_user_attr("grid_point", json.dumps(point))
        study.set_user_attr("search", name)
        study.set_user_attr("num_samples", space.num_samples)  # the budget, which a --join driver must share
        gs = GridStudy(i, point, study, space.num_samples, storage=storage, shared=shared, heartbeats=heartbeats)
        if not shared:
            gs.claim([t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))])
            gs.requeue_lost_claims()
        studies.append(gs)
    return studies
