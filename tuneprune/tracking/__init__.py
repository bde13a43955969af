"""MLflow tracking: where runs go, parent and child runs, per-epoch metrics, reachability checks.

Everything goes through ``MlflowClient`` with explicit run ids (no fluent global state),
so Ray workers, the driver and resumed drivers can all write to the same runs.
"""

from tuneprune.tracking.locations import (
    absolute_sqlite,
    check_storage_reachable,
    check_tracking_reachable,
    default_storage_url,
    default_tracking_uri,
    store_missing,
)
from tuneprune.tracking.runs import (
    TAG_KIND,
    TAG_NAME,
    TAG_TRIAL,
    RunTracker,
    child_run,
    download_artifact,
    find_parent_run,
    locate_run,
    parent_run,
    run_config_from_mlflow,
)

__all__ = [
    "TAG_KIND",
    "TAG_NAME",
    "TAG_TRIAL",
    "RunTracker",
    "absolute_sqlite",
    "check_storage_reachable",
    "check_tracking_reachable",
    "child_run",
    "default_storage_url",
    "default_tracking_uri",
    "download_artifact",
    "find_parent_run",
    "locate_run",
    "parent_run",
    "run_config_from_mlflow",
    "store_missing",
]
