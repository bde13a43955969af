"""Parent and child MLflow runs found by tags, so resumed drivers and restarted workers never duplicate; a parent
run is never left RUNNING (:func:`parent_run`); their artifacts downloaded with one-line errors."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tuneprune.shared.config import ConfigError

TAG_NAME = "tuneprune.name"  # the search / evolution / study name, on parent runs
TAG_KIND = "tuneprune.kind"  # search, evolution, relevance, trial, generation, ranking
TAG_TRIAL = "tuneprune.trial"  # the trial (or generation) key, on child runs
TAG_PARENT = "mlflow.parentRunId"
MAX_PARAM_CHARS = 6000
MAX_TAG_CHARS = 5000
WRITERS_RACED = 3  # tries of log_params against other writers of the same run


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}} -> {'a.b': 1}``."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def environment_tags() -> dict[str, str]:
    """Package versions and the git commit of the working tree, for reproducibility."""
    from importlib.metadata import PackageNotFoundError, version

    tags = {}
    for pkg in ("tuneprune", "torch", "torchvision", "ray", "optuna", "mlflow", "pymoo", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            tags[f"version.{pkg}"] = version(pkg)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        root = Path(__file__).resolve().parents[2]
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if commit:
            tags["mlflow.source.git.commit"] = commit
    return tags


def run_tags(tags: dict[str, Any] | None) -> list:
    """``tags`` as MLflow ``RunTag`` entities, each value a string of at most :data:`MAX_TAG_CHARS`."""
    from mlflow.entities import RunTag

    return [RunTag(k, str(v)[:MAX_TAG_CHARS]) for k, v in (tags or {}).items()]


def duplicate_name(name: str, kind: str, found: str) -> ConfigError:
    """The error for a new search or evolution whose name is taken; ``found``: where (``MLflow run ID``)."""
    article = "an" if kind[0] in "aeiou" else "a"
    return ConfigError(
        f"name = {name!r}: {article} {kind} of that name already exists ({found}); "
        "pass --resume to continue it or choose another --name"
    )


class RunTracker:
    """Thin, explicit-id wrapper over ``MlflowClient`` for one experiment; :meth:`shared` keeps one per process."""

    def __init__(self, tracking_uri: str, experiment: str = "tuneprune") -> None:
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # after mlflow's import, which configures its loggers
            logging.getLogger(name).setLevel(logging.WARNING)

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self.experiment_name = experiment

    @classmethod
    @functools.cache
    def shared(cls, tracking_uri: str, experiment: str = "tuneprune") -> RunTracker:
        """The tracker of this process for ``(tracking_uri, experiment)``: a Ray worker reused for trial
        after trial opens its client and looks its experiment up once."""
        return cls(tracking_uri, experiment)

    @functools.cached_property
    def experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            # A tracking server chooses the artifact location itself (served artifacts, so workers on other nodes
            # upload through it); a SQLite store keeps them in mlartifacts/ beside it, the same for every process.
            location = None
            if self.tracking_uri.startswith("sqlite:///"):
                store = Path(self.tracking_uri.removeprefix("sqlite:///"))
                location = (store.parent / "mlartifacts").resolve().as_uri()
            try:
                return self.client.create_experiment(self.experiment_name, artifact_location=location)
            except Exception:  # created concurrently by another process
                experiment = self.client.get_experiment_by_name(self.experiment_name)
                if experiment is None:
                    raise
        return experiment.experiment_id

    # -- finding runs -------------------------------------------------------------------
    def search(self, filter_string: str) -> list:
        return self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=10_000)

    def find_parent(self, name: str, kind: str):
        if "experiment_id" not in vars(self) and self.client.get_experiment_by_name(self.experiment_name) is None:
            return None  # looking must not create the experiment
        runs = self.search(f"tags.`{TAG_NAME}` = '{name}' and tags.`{TAG_KIND}` = '{kind}'")
        # The oldest: drivers started at once may briefly have one each (see start_parent).
        return min(runs, key=lambda r: (r.info.start_time, r.info.run_id)) if runs else None

    def children(self, parent_id: str) -> list:
        return self.search(f"tags.`{TAG_PARENT}` = '{parent_id}'")

    def find_child(self, parent_id: str, key: str) -> str | None:
        runs = self.search(f"tags.`{TAG_PARENT}` = '{parent_id}' and tags.`{TAG_TRIAL}` = '{key}'")
        return runs[0].info.run_id if runs else None

    # -- creating runs --------------------------------------------------------------------
    def start_parent(self, name: str, kind: str, *, resume: bool) -> str:
        """Create the parent run of ``name``, or reopen it when resuming. Refuse silent duplicates."""
        existing = self.find_parent(name, kind)
        if existing is None:
            tags = {TAG_NAME: name, TAG_KIND: kind, **environment_tags()}
            run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
            # Drivers of one search started at once (cluster mode) may each have created a parent:
            # every one of them keeps the oldest, the others delete their own.
            existing = self.find_parent(name, kind)
            if existing is None or existing.info.run_id == run_id:
                return run_id
            self.client.delete_run(run_id)
        if not resume:
            raise duplicate_name(name, kind, f"MLflow run {existing.info.run_id}")
        self.client.update_run(existing.info.run_id, "RUNNING")
        return existing.info.run_id

    def child(
        self,
        parent_id: str,
        key: str,
        run_name: str,
        kind: str,
        tags: dict[str, str] | None = None,
        *,
        surely_new: bool = False,
    ) -> tuple[str, bool]:
        """The child run of ``parent_id`` with trial key ``key``, and whether it is new: found if it exists
        (RUNNING again), else created; not looked for when the caller knows it is ``surely_new``."""
        run_id = None if surely_new else self.find_child(parent_id, key)
        if run_id is not None:
            self.client.update_run(run_id, "RUNNING")
            return run_id, False
        all_tags = {TAG_PARENT: parent_id, TAG_TRIAL: key, TAG_KIND: kind, **(tags or {})}
        return self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags).info.run_id, True

    # -- logging --------------------------------------------------------------------------
    def log_params(
        self, run_id: str, params: dict[str, Any], tags: dict[str, Any] | None = None, *, new_run: bool = False
    ) -> None:
        """Log (flattened) params the run does not have yet, and ``tags``, in as few batches as possible.

        Re-logging a param is a no-op, so a restarted trial can call this again; a param given
        another value than the run has (a resumed search's ``num_samples`` or grid) keeps its
        first, MLflow's params being immutable, and the new one is the tag ``latest.KEY``. A ``new_run``
        has none yet, and is not read. Drivers that join one search log the same params on one
        parent run at once: the store checks and inserts in two steps, so the slower of two
        writers of a param is refused; it reads the run again and logs what is still missing.
        """
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        wanted = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in flatten(params).items()]
        tag_items = run_tags(tags)
        for attempt in range(WRITERS_RACED):
            have = {} if new_run and attempt == 0 else self.client.get_run(run_id).data.params
            items = [p for p in wanted if p.key not in have]
            latest = run_tags({f"latest.{p.key}": p.value for p in wanted if have.get(p.key, p.value) != p.value})
            try:
                for i in range(0, max(len(items), 1), 100):
                    self.client.log_batch(run_id, params=items[i : i + 100], tags=tag_items + latest if i == 0 else [])
                return
            except MlflowException:
                if attempt == WRITERS_RACED - 1:
                    raise

    def log_metrics(
        self, run_id: str, metrics: dict[str, float], step: int, tags: dict[str, Any] | None = None
    ) -> None:
        """Log the numbers of ``metrics`` at ``step``, and ``tags``, in one batch."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if isinstance(v, (int, float))]
        tag_items = run_tags(tags)
        if items or tag_items:
            self.client.log_batch(run_id, metrics=items, tags=tag_items)

    def logged_steps(self, run_id: str, key: str) -> set[int]:
        return {m.step for m in self.client.get_metric_history(run_id, key)}

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        self.client.log_batch(run_id, tags=run_tags(tags))

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def finish(self, run_id: str, status: str = "FINISHED", error: str | None = None) -> None:
        """End a run with a status that tells the truth: FINISHED, FAILED (error tagged) or KILLED."""
        if error:
            self.set_tags(run_id, {"error": error})
        self.client.set_terminated(run_id, status)


@contextlib.contextmanager
def parent_run(
    tracker: RunTracker, name: str, kind: str, *, resume: bool, others_running: Callable[[], bool] | None = None
) -> Iterator[str]:
    """Start (or, with ``resume``, reopen) the parent run ``name`` of ``kind`` and yield its id.

    It ends FINISHED when the block completes, KILLED on Ctrl-C or ``kill`` (SIGTERM, which the
    CLI raises as Ctrl-C: :func:`tuneprune.cluster.join.interrupt_on_sigterm`) and FAILED on any
    other exception (the error tagged, the exception re-raised). A run that several drivers share
    stays RUNNING while ``others_running()`` says another still runs, for the last one to end.
    """
    parent_id = tracker.start_parent(name, kind, resume=resume)

    def end(status: str, error: str | None = None) -> None:
        try:
            shared = others_running is not None and others_running()
        except Exception:  # cannot tell (a store unreachable): ended, rather than left RUNNING
            shared = False
        if not shared:
            tracker.finish(parent_id, status, error)

    try:
        yield parent_id
    except BaseException as err:
        end(*ending(err))
        raise
    end("FINISHED")


def ending(err: BaseException) -> tuple[str, str]:
    """The status and error of a run whose block raised ``err``: KILLED on Ctrl-C (or ``kill``), else FAILED."""
    return "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED", f"{type(err).__name__}: {err}"


@contextlib.contextmanager
def child_run(tracker: RunTracker, parent_id: str, key: str, run_name: str, kind: str) -> Iterator[tuple[str, bool]]:
    """The child run ``key`` of ``parent_id`` (:meth:`RunTracker.child`) for the block, as ``(run_id, new_run)``.

    It ends as :func:`parent_run` ends, never left RUNNING: FINISHED when the block completes, KILLED on Ctrl-C
    or ``kill``, FAILED on any other exception (the error tagged, the exception re-raised).
    """
    run_id, new_run = tracker.child(parent_id, key, run_name, kind)
    try:
        yield run_id, new_run
    except BaseException as err:
        tracker.finish(run_id, *ending(err))
        raise
    tracker.finish(run_id)


def find_parent_run(tracking_uri: str, name_or_id: str, experiment: str = "tuneprune"):
    """A parent run by run id, or by the name of its search or evolution."""
    tracker = RunTracker(tracking_uri, experiment)
    try:
        return tracker.client.get_run(name_or_id)
    except Exception:
        runs = tracker.search(f"tags.`{TAG_NAME}` = '{name_or_id}'")
        if not runs:
            raise ConfigError(
                f"source = {name_or_id!r}: no search or evolution of that name or run id in {tracking_uri}"
            ) from None
        return runs[0]


def download_artifact(label: str, tracking_uri: str, run_id: str, path: str, dst: Path) -> Path:
    """Download artifact ``path`` of run ``run_id`` into ``dst`` and return its local path.

    A missing run, artifact or store raises a one-line :class:`ConfigError` starting with
    ``label`` (what the user named: ``--from-run ID``, ``source = 'NAME'``).
    """
    import mlflow.artifacts

    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=path, dst_path=str(dst), tracking_uri=tracking_uri
        )
    except Exception as err:
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise ConfigError(f"{label}: run {run_id} has no {path} artifact in {tracking_uri} ({reason})") from None
    return Path(local)


def locate_run(run_id: str, tracking_uri: str | None) -> str:
    """The tracking URI holding ``run_id``: ``tracking_uri`` if given (a SQLite file must exist), else the default
    store or one in the index.

    So ``--from-run RUN_ID`` works from any directory after a search recorded its store
    (:mod:`tuneprune.tracking.index`); otherwise the error names every store it looked in.
    """
    from mlflow.tracking import MlflowClient

    from tuneprune.tracking.index import tracking_uris
    from tuneprune.tracking.locations import check_tracking_reachable, default_tracking_uri, store_missing

    if tracking_uri:
        if store_missing(tracking_uri):  # opening it would create an empty store there
            raise ConfigError(f"--from-run {run_id}: no MLflow store at {tracking_uri}; check --tracking-uri")
        return tracking_uri
    candidates = list(dict.fromkeys([default_tracking_uri(), *tracking_uris()]))
    for uri in (u for u in candidates if not store_missing(u)):
        with contextlib.suppress(Exception):  # unreachable, or not this store's run
            check_tracking_reachable(uri)
            MlflowClient(uri).get_run(run_id)
            return uri
    raise ConfigError(f"--from-run {run_id}: no such MLflow run in {', '.join(candidates)}; pass --tracking-uri URI")


def run_config_from_mlflow(run_id: str, tracking_uri: str | None) -> dict[str, Any]:
    """The resolved run config a trial logged as its ``config.json`` artifact."""
    uri = locate_run(run_id, tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(download_artifact(f"--from-run {run_id}", uri, run_id, "config.json", Path(tmp)).read_text())
