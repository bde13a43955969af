"""What a report is about: a search or an evolution named by its name, its MLflow parent run id or its results directory.

Whatever names it, a source ends up as the ``summary.json`` the run wrote (formulas §8), the parent MLflow run it
belongs to and the tracking store that holds the rest: trial metric histories, the resolved space, generation
populations.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tuneprune.shared.config import ConfigError
from tuneprune.tracking import (
    TAG_KIND,
    check_tracking_reachable,
    default_tracking_uri,
    download_artifact,
    find_parent_run,
    store_missing,
)
from tuneprune.tracking.index import index_path, lookup

SUMMARY = "summary.json"


@dataclass
class Source:
    """A finished search or evolution: its summary, parent run and default report directory."""

    label: str
    kind: str
    summary: dict[str, Any]
    tracking_uri: str
    results_dir: Path
    _tracking_checked: bool = field(default=False, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.summary["name"]

    @property
    def parent_run_id(self) -> str:
        return self.summary["parent_run_id"]

    @cached_property
    def client(self):  # -> MlflowClient, imported lazily
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.tracking_uri)

    def run_url(self) -> str | None:
        """The parent run's page in the MLflow UI; None when the store lacks that run (a results directory moved without it)
        or is out of reach."""
        from tuneprune.output.commands import run_url

        try:
            self.check_tracking()
            experiment_id = self.client.get_run(self.parent_run_id).info.experiment_id
        except Exception:  # any MLflow lookup failure means there is no page to show
            return None
        return run_url(self.tracking_uri, experiment_id, self.parent_run_id)

    def artifact_text(self, run_id: str, path: str) -> str:
        return artifact_text(self.label, self.tracking_uri, run_id, path)

    def trial_metrics(self, entry: dict[str, Any]) -> dict[str, float]:
        """A trial's final metrics: recorded in the summary, else (older summaries) read from its MLflow run."""
        if "metrics" in entry:
            return entry["metrics"]
        run_id = entry.get("mlflow_run_id")
        if run_id is None or store_missing(self.tracking_uri):
            return {}
        return dict(self.client.get_run(run_id).data.metrics)

    def require_search(self) -> None:
        if self.kind != "search":
            raise ConfigError(f"source = {self.label!r}: an {self.kind}, not a search")

    def check_tracking(self) -> None:
        """The tracking store (reachable) and the parent run must exist: the report reads from it and logs to it.
        Checked once per source (a server's check is a request): after a success, later calls return at once."""
        if self._tracking_checked:
            return
        if store_missing(self.tracking_uri):
            raise ConfigError(f"source = {self.label!r}: no MLflow store at {self.tracking_uri}")
        check_tracking_reachable(self.tracking_uri)  # within seconds: a server out of reach is retried for minutes
        try:
            find_parent_run(self.tracking_uri, self.parent_run_id)
        except ConfigError:
            raise ConfigError(
                f"source = {self.label!r}: its parent run {self.parent_run_id} is not in {self.tracking_uri}"
            ) from None
        self._tracking_checked = True


def artifact_text(label: str, tracking_uri: str, run_id: str, path: str) -> str:
    """The text of an artifact of ``run_id`` (one-line :class:`ConfigError` naming ``label`` if it is missing)."""
    with tempfile.TemporaryDirectory() as tmp:
        return download_artifact(f"source = {label!r}", tracking_uri, run_id, path, Path(tmp)).read_text()


def _from_directory(label: str, directory: Path, tracking_uri: str | None) -> Source:
    path = directory / SUMMARY
    if not path.is_file():
        raise ConfigError(f"source = {label!r}: directory without {SUMMARY} (not a finished search or evolution)")
    summary = json.loads(path.read_text())
    kind = "search" if "trials" in summary else "evolution" if "front" in summary else None
    if kind is None:
        raise ConfigError(f"source = {label!r}: {SUMMARY} is neither a search's nor an evolution's")
    return Source(label, kind, summary, tracking_uri or summary["tracking_uri"], directory.resolve())


def _from_tracking(label: str, tracking_uri: str | None) -> Source:
    uri = tracking_uri or default_tracking_uri()
    if store_missing(uri):
        raise ConfigError(
            f"source = {label!r}: not a results directory, not a name or run id in {index_path()}, and no MLflow store at {uri}; "
            "run from the directory the search ran in, or pass --tracking-uri"
        )
    check_tracking_reachable(uri)
    run = find_parent_run(uri, label)
    kind = run.data.tags.get(TAG_KIND)
    if kind not in ("search", "evolution"):
        raise ConfigError(
            f"source = {label!r}: MLflow run {run.info.run_id} is a {kind or 'untagged'} run, not a search or evolution"
        )
    summary = json.loads(artifact_text(label, uri, run.info.run_id, SUMMARY))
    local = Path(summary["results_dir"])
    source = Source(label, kind, summary, uri, local if local.is_dir() else Path("runs", summary["name"]).resolve())
    source._tracking_checked = summary["parent_run_id"] == run.info.run_id  # its store and run were just checked
    return source


def resolve_source(source: str, tracking_uri: str | None = None) -> Source:
    """The :class:`Source` that ``source`` names: a results directory (``runs/NAME``); or a name whose finished
    results are in ``./runs/NAME`` (the working directory's, before a search of that name elsewhere); or a name or
    parent run id looked up in the index (:mod:`tuneprune.tracking.index`, from any directory, its latest entry of a
    name), else in ``tracking_uri`` (default ``./mlruns.db``)."""
    directory = Path(source)
    if directory.is_dir():
        return _from_directory(source, directory, tracking_uri)
    here = Path("runs", source)  # a name's results in the working directory come before the index's latest elsewhere
    if (here / SUMMARY).is_file():
        return _from_directory(source, here, tracking_uri)
    entry = lookup(source)
    if entry is not None and Path(entry["results_dir"], SUMMARY).is_file():
        return _from_directory(source, Path(entry["results_dir"]), tracking_uri or entry["tracking_uri"])
    return _from_tracking(source, tracking_uri)
