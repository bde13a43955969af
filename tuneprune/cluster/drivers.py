"""What the search and the evolution drivers share before they start: the space document and the checks.

Everything that can be wrong with the input is found here (and in each driver's own
checks) before Ray starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneprune.cluster.join import check_local_resources, check_ray_reachable
from tuneprune.data import check_data_dir
from tuneprune.shared.config import apply_overrides, load_yaml
from tuneprune.tracking import absolute_sqlite, check_tracking_reachable, default_tracking_uri


def space_document(space_path: str | Path, overrides: list[str] | None, name: str | None) -> dict[str, Any]:
    """The space YAML with the ``--set`` overrides applied and ``--name`` as its name."""
    document = apply_overrides(load_yaml(space_path), overrides)
    if name is not None:
        document["name"] = name
    return document


@dataclass(frozen=True)
class DriverPlace:
    """Where a driver's run goes: its name, its (reachable) MLflow store and its results directory."""

    name: str
    tracking_uri: str
    results_dir: Path


def check_driver(
    space_path: str | Path,
    space_name: str | None,
    data: Sequence[tuple[str, Path | None, bool]],
    resources: tuple[float, float],
    *,
    address: str | None,
    tracking_uri: str | None,
    results_root: str | Path,
) -> DriverPlace:
    """Check every data location (dataset, data dir, download), the local resources (cpu, gpu) without a
    cluster, else that the cluster's ``address`` answers, and the MLflow store; name the run (the space's name, else
    its file's stem) and its results directory ``results_root/name``."""
    for location in dict.fromkeys(data):
        check_data_dir(*location)
    if address is None:
        check_local_resources(*resources)
    else:
        check_ray_reachable(address)
    name = space_name or Path(space_path).stem
    tracking_uri = absolute_sqlite(tracking_uri or default_tracking_uri())
    check_tracking_reachable(tracking_uri)
    return DriverPlace(name, tracking_uri, (Path(results_root) / name).resolve())
