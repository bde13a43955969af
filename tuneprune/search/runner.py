"""Run a search: validate everything, open the studies and the parent run, drive Ray Tune, summarise.

Everything that can be wrong with the input is found in :func:`prepare_search`, before
Ray starts; :func:`run_search` then runs on a local Ray (started here) or joins a cluster.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from operator import methodcaller
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from sqlalchemy.engine import make_url  # imported with the module: a lazy import here raced MLflow's in other threads

from tuneprune.cluster.drivers import check_driver, space_document
from tuneprune.cluster.join import ensure_ray
from tuneprune.cluster.quiet import configure_quiet
from tuneprune.output.progress import say
from tuneprune.output.summaries import write_summary
from tuneprune.search.space import SearchSpace, load_space
from tuneprune.shared.config import ConfigError
from tuneprune.shared.files import replace_atomically
from tuneprune.tracking import (
    RunTracker,
    absolute_sqlite,
    check_storage_reachable,
    default_storage_url,
    parent_run,
    store_missing,
)
from tuneprune.tracking.index import index_results
from tuneprune.tracking.runs import duplicate_name

if TYPE_CHECKING:  # imported where used: Optuna loads with the studies
    from tuneprune.search.studies import GridStudy


@dataclass
class PreparedSearch:
    """A validated search, ready to run."""

    space: SearchSpace
    document: dict[str, Any]
    name: str
    tracking_uri: str
    storage_url: str
    results_dir: Path
    address: str | None = None
    resume: bool = False
    join: bool = False
    extra_artifacts: dict[str, str] = field(default_factory=dict)  # file name -> text, logged to the parent run


@dataclass
class SearchSummary:
    """What a search produced: every trial, the best (or Pareto) trials per grid point, and where."""

    name: str
    parent_run_id: str
    tracking_uri: str
    storage_url: str
    results_dir: Path
    objectives: dict[str, str]
    trials: list[dict[str, Any]] = field(default_factory=list)
    best: list[dict[str, Any]] = field(default_factory=list)
    wall_time: float = 0.0
    ray_start_time: float = 0.0


def prepare_search(
    space_path: str | Path,
    overrides: list[str] | None = None,
    *,
    name: str | None = None,
    tracking_uri: str | None = None,
    storage_url: str | None = None,
    num_samples: int | None = None,
    results_root: str | Path = "runs",
    address: str | None = None,
    resume: bool = False,
    join: bool = False,
    document: dict[str, Any] | None = None,
) -> PreparedSearch:
    """Load and validate the space, the data location and the stores. Starts nothing.

    ``resume`` continues an existing search; ``join`` starts the search or joins it. ``document`` is the space
    itself (a study's grid search, renamed ``name`` when given), instead of the file ``space_path`` names.
    """
    if document is None:
        document = space_document(space_path, overrides, name)
    elif name is not None:
        document = {**document, "name": name}
    if num_samples is not None:
        document = {**document, "num_samples": num_samples}
    space = load_space(document)
    data = [(spec.dataset, spec.data_dir, spec.download) for spec in space.specs]  # every grid point's
    place = check_driver(
        space_path, space.name, data, (space.resources.cpu, space.resources.gpu),
        address=address, tracking_uri=tracking_uri, results_root=results_root,
    )  # fmt: skip
    storage_url = absolute_sqlite(storage_url or default_storage_url())
    check_storage_reachable(storage_url)
    check_search_name(place.name, space.experiment, place.tracking_uri, storage_url, resume, join, place.results_dir)
    if (resume or join) and not store_missing(storage_url):
        from tuneprune.search.studies import check_space, open_storage

        check_space(space, place.name, open_storage(storage_url), shared=join)
    return PreparedSearch(
        space, document, place.name, place.tracking_uri, storage_url, place.results_dir, address, resume, join
    )


def check_search_name(
    name: str,
    experiment: str,
    tracking_uri: str,
    storage_url: str,
    resume: bool,
    join: bool = False,
    results_dir: Path | None = None,
) -> None:
    """A new search needs a name neither store knows (its studies hold its trials: under a taken name it would run
    none and list the old ones), and ``--resume`` one they know (a typo must not start over); ``--join`` alone starts
    the search or joins it, any name will do. ``--resume`` or ``--join`` of a search whose parent run names the
    storage of its studies needs that storage, or one holding them: in another (``--storage`` forgotten in another
    directory) it would run every trial again, as new ones under the old keys. Likewise their MLflow store, once a
    trial has logged to it: another (``--tracking-uri`` forgotten) would get a second parent run, and the reports
    miss the first one's trials. ``--resume`` (a lone driver) needs the ``results_dir`` its parent run names while
    that folder exists: elsewhere its trials left running would start over and its summary go to a second folder."""
    from tuneprune.search.studies import logged_run, open_storage, study_names

    parent = None if store_missing(tracking_uri) else RunTracker(tracking_uri, experiment).find_parent(name, "search")
    storage = None if store_missing(storage_url) else open_storage(storage_url)
    studies = [] if storage is None else study_names(name, storage)
    if (resume or join) and parent is None and storage is not None and (run_id := logged_run(name, storage)):
        raise ConfigError(
            f"--tracking-uri {redact(tracking_uri)}: holds no parent run of the search {name!r} in experiment "
            f"{experiment!r}, whose trials were logged to another MLflow store or experiment (run {run_id}); pass the "
            f"--tracking-uri (and experiment) they were logged to"
        )
    recorded = parent.data.params.get("storage") if parent is not None else None  # logged at its first start
    if (resume or join) and parent is not None and not studies and recorded not in (None, redact(storage_url)):
        raise ConfigError(
            f"--storage {redact(storage_url)}: holds no study of the search {name!r}, whose parent run "
            f"{parent.info.run_id} keeps its trials in {recorded}; pass --storage with that database"
        )
    placed = parent.data.params.get("results_dir") if parent is not None and resume and not join else None
    if placed is not None and results_dir is not None and Path(placed) != results_dir and Path(placed).is_dir():
        raise ConfigError(
            f"--results-dir {results_dir.parent}: the search {name!r} keeps its results in {placed} (its parent run's "
            f"results_dir); pass --results-dir {Path(placed).parent}"
        )
    if join and not resume:
        return
    if parent is not None and not resume:
        raise duplicate_name(name, "search", f"MLflow run {parent.info.run_id}")
    if studies and not resume:
        raise duplicate_name(name, "search", f"Optuna study {studies[0]!r} in {redact(storage_url)}")
    if resume and parent is None and not studies:
        raise ConfigError(
            f"--resume --name {name!r}: no search of that name to resume in {redact(tracking_uri)} or {redact(storage_url)}"
        )


def redact(url: str) -> str:
    """``url`` with any password masked, for MLflow params and summaries."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a database URL (an http tracking URI): nothing to hide
        return url


def _collect(studies, space: SearchSpace) -> tuple[list[dict], list[dict]]:
    """Every trial of the studies, and the best (or Pareto) trials of each (fewer fields), as the summary lists them.
    A claimed orphan is listed once, as the trial that continued it (its key); a FAIL trial is one that failed."""
    from tuneprune.search.searcher import trial_key, trial_run_name
    from tuneprune.search.studies import claimed
    from tuneprune.shared.pareto import best_of

    names = list(space.objectives)

    def entry(gs, t) -> dict[str, Any]:  # gs: a GridStudy, t: one of its FrozenTrials
        key = trial_key(gs.index, t)
        return {
            "key": key,
            "name": trial_run_name(key, gs.grid_point, t.params),
            "grid": gs.grid_point,
            "params": t.params,
            "state": t.state.name,
            "values": dict(zip(names, t.values, strict=True)) if t.values else {},
            "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
            "error": t.user_attrs.get("error"),
            "metrics": t.user_attrs.get("metrics", {}),
            "config": config(gs, t),
        }

    def config(gs, t) -> dict[str, Any] | None:
        """The config the trial ran, recorded when it was handed out (another driver's machine fields than this
        space's, after a --resume); resolved from the space for a trial of an older tuneprune; None for one whose
        values the run config refused together (never run)."""
        if "config" in t.user_attrs:
            return t.user_attrs["config"]
        try:
            return space.resolve(gs.grid_point, t.params).model_dump(mode="json")
        except ConfigError:
            return None

    trials: list[dict[str, Any]] = []
    best: list[dict[str, Any]] = []
    for gs in studies:
        every = gs.study.get_trials(deepcopy=False)
        superseded = claimed(every)
        listed = {t.number: entry(gs, t) for t in every if t.number not in superseded}
        trials += listed.values()
        complete = [t for t in every if t.number in listed and listed[t.number]["state"] == "COMPLETE"]
        if complete:  # one objective: a tie to the lowest key (Optuna's best_trial leaves ties to the storage's SQL)
            scores, keys = [t.values[0] for t in complete], [listed[t.number]["key"] for t in complete]
            chosen = (
                gs.study.best_trials
                if len(names) > 1
                else [complete[best_of(scores, keys, space.objectives[names[0]])]]
            )
            fields = ("key", "grid", "params", "values", "mlflow_run_id", "config")
            best += [{k: listed[t.number][k] for k in fields} for t in chosen]  # their entries above, not made again
    return trials, best


def run_search(prepared: PreparedSearch, *, progress: bool = True) -> SearchSummary:
    """Run (or resume) the search to completion and return its summary. The parent run ends FINISHED, or FAILED
    (KILLED on Ctrl-C) with the error tagged: never left RUNNING."""
    from tuneprune.search.studies import open_studies

    configure_quiet()
    t_start = time.perf_counter()
    space = prepared.space
    results_dir = prepared.results_dir
    results_dir.mkdir(parents=True, exist_ok=True)
    # the studies before the parent run: a --join driver started with others is checked against theirs as it opens them
    say(f"opening the Optuna studies in {redact(prepared.storage_url)} ...")
    studies = open_studies(space, prepared.name, prepared.storage_url, shared=prepared.join)
    say(f"opening the MLflow store {redact(prepared.tracking_uri)} ...")
    tracker = RunTracker(prepared.tracking_uri, space.experiment)
    others = partial(_others_running, prepared) if prepared.join else None
    with parent_run(
        tracker, prepared.name, "search", resume=prepared.resume or prepared.join, others_running=others
    ) as parent_id:
        index_results(
            prepared.name, "search", results_dir, redact(prepared.tracking_uri), parent_id, redact(prepared.storage_url)
        )
        return _search(prepared, studies, tracker, parent_id, progress, t_start)


def _others_running(prepared: PreparedSearch) -> bool:
    """Whether other drivers of the joined search still run: its parent run is then theirs to end (docs/cluster.md)."""
    from tuneprune.search.studies import drivers_running

    if running := drivers_running(prepared.name, prepared.storage_url):
        say("other drivers of this search still run: its parent run stays RUNNING until the last of them ends")
    return running


def _search(
    prepared: PreparedSearch,
    studies: list[GridStudy],
    tracker: RunTracker,
    parent_id: str,
    progress: bool,
    t_start: float,
) -> SearchSummary:
    """Log the parent run's params, drive Ray Tune over the remaining trials of ``studies``, write the outputs."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from tuneprune.search.early_stop import RUNGS_FILE, start_stopper
    from tuneprune.search.monitor import SearchMonitor
    from tuneprune.search.protocol import TrialContext
    from tuneprune.search.searcher import StudySearcher
    from tuneprune.search.trainable import run_trial

    space, results_dir = prepared.space, prepared.results_dir
    tracker.log_params(
        parent_id,
        {
            "sampler": space.sampler.type,
            "seed": space.sampler.seed,
            "num_samples": space.num_samples,
            "max_concurrent": space.max_concurrent,
            "early_stopping": space.early_stopping.type,
            "objectives": json.dumps(space.objectives),
            "grid": json.dumps(space.grid),
            "searched": json.dumps(sorted(space.params)),
            "storage": redact(prepared.storage_url),
            "results_dir": str(results_dir),  # its first driver's: where --resume finds the checkpoints
            "pack": space.resources.pack,
        },
    )
    tracker.log_text(parent_id, yaml.safe_dump(prepared.document, sort_keys=False), "space.yaml")
    tracker.log_text(parent_id, json.dumps(space.model_dump(mode="json"), indent=2), "resolved_space.json")
    for file_name, text in prepared.extra_artifacts.items():
        tracker.log_text(parent_id, text, file_name)

    total = sum(gs.remaining for gs in studies)
    ray_time = 0.0
    if total > 0:
        say(f"joining the Ray cluster at {prepared.address} ..." if prepared.address else "starting a local Ray ...")
        ray_time = ensure_ray(prepared.address)
        pack = space.resources.pack
        concurrent = f"in packs of {pack}, {space.max_concurrent} packs" if pack > 1 else space.max_concurrent
        say(f"running {total} trials, {concurrent} at a time; results in {results_dir}")
        stopper, stopper_actor = None, None
        if space.early_stopping.type == "asha":  # rungs per grid point, asked by the trials (formulas §10.9)
            stopper = f"tuneprune-asha-{os.getpid()}-{int(time.time() * 1000)}"
            stopper_actor = start_stopper(  # held until the run ends; its tables outlive it in RUNGS_FILE, read back
                stopper, space.early_stopping, space.max_epochs(), list(space.objectives.values()),
                results_dir / RUNGS_FILE,
                parent_id,  # by this search's drivers only: an old search of its name may have left the file
            )  # fmt: skip
        context = TrialContext(
            prepared.tracking_uri, space.experiment, parent_id, str(results_dir), dict(space.objectives), stopper
        )
        monitor = SearchMonitor(tracker, space.objectives, total, show=progress)
        study_searcher = StudySearcher(space, studies, context, on_refused=monitor.count_refused)
        searcher = ConcurrencyLimiter(study_searcher, max_concurrent=space.max_concurrent)
        trainable = tune.with_resources(run_trial, {"cpu": space.resources.cpu, "gpu": space.resources.gpu})
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                # joined: orphans claimed later add trials, so the searcher says when the study is done
                num_samples=-1 if prepared.join else total,
                reuse_actors=True,
                trial_dirname_creator=lambda trial: trial.trial_id,
            ),
            run_config=tune.RunConfig(
                name=f"tune-{int(time.time())}-{os.getpid()}",
                storage_path=str(results_dir / "ray"),
                verbose=0,
                callbacks=[monitor],
                failure_config=tune.FailureConfig(max_failures=space.max_failures),
                # Only the latest: a restarted worker resumes from it; the monitor deletes it once the trial ends.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )
        logging.getLogger("ray.tune").setLevel(logging.ERROR)
        # Ctrl-C raises KeyboardInterrupt, as everywhere else in the command: Tune's own handler would stop the
        # trials and return as if the search had ended (parent FINISHED, trial runs RUNNING, a summary, exit 0)
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        try:
            tuner.fit()
        finally:
            monitor.close()
            study_searcher.close()  # every trial told before the studies are read below
            if stopper_actor is not None:
                import ray

                ray.kill(stopper_actor)

    trials, best = _collect(studies, space)
    summary = SearchSummary(
        prepared.name, parent_id, redact(prepared.tracking_uri), redact(prepared.storage_url), results_dir,
        dict(space.objectives), trials, best, time.perf_counter() - t_start, ray_time,
    )  # fmt: skip
    _write_outputs(summary, tracker)
    return summary


def _write_outputs(summary: SearchSummary, tracker: RunTracker) -> None:
    """summary.json and one best-config YAML per best trial (stale ones deleted), logged to the parent run; each
    replaced whole, as joined drivers sharing the results directory write the same files. The parent run's best/
    keeps former best files (MLflow's client deletes no artifact): each best entry names its ``file``."""
    out = summary.results_dir
    paths = [
        out / ("best.yaml" if len(summary.best) == 1 else f"best-{i:02d}-{entry['key']}.yaml")
        for i, entry in enumerate(summary.best)
    ]
    for path, entry in zip(paths, summary.best, strict=True):
        entry["file"] = path.name
    write_summary(summary, out / "summary.json")
    tracker.log_artifact(summary.parent_run_id, out / "summary.json")
    for old in set(out.glob("best*.yaml")) - set(paths):
        old.unlink(missing_ok=True)
    for path, entry in zip(paths, summary.best, strict=True):
        replace_atomically(path, methodcaller("write", yaml.safe_dump(entry["config"], sort_keys=False).encode()))
        tracker.log_artifact(summary.parent_run_id, path, "best")
    from optuna.trial import TrialState

    counts = Counter(trial["state"] for trial in summary.trials)  # every state, zero too: earlier counts replaced
    tracker.log_metrics(
        summary.parent_run_id, {f"trials_{state.name.lower()}": counts[state.name] for state in TrialState}, step=0
    )
    if summary.best and len(summary.objectives) == 1:
        ((metric, direction),) = summary.objectives.items()
        values = [b["values"][metric] for b in summary.best]
        tracker.log_metrics(
            summary.parent_run_id, {f"best_{metric}": max(values) if direction == "max" else min(values)}, step=0
        )
