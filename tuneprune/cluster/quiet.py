"""One place that keeps the libraries quiet: no telemetry, no progress bars or loggers of their own.

:func:`configure_quiet` runs at CLI start-up, at the start of a search or an evolution,
and in the Ray trainable and worker. It only sets what the user has not set.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

TELEMETRY = {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
"""Usage statistics off in Ray, MLflow and anything honouring ``DO_NOT_TRACK`` (also passed to Ray workers)."""

OUTPUT = {
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # no tqdm bars in the tool's output
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no CSV/JSON/TensorBoard loggers per trial
    "RAY_AIR_NEW_OUTPUT": "0",  # Tune's own progress output stays off (verbose=0); the monitor shows progress
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}


def configure_quiet() -> None:
    """Set :data:`TELEMETRY` and :data:`OUTPUT` in the environment, keeping any value already set."""
    for name, value in {**TELEMETRY, **OUTPUT}.items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """The process's stderr (file descriptor 2) sent to ``/dev/null`` for the block: what a library's native code
    logs there (Ray's C++ client: each refused attempt) cannot be turned off otherwise."""
    quiet, saved = os.open(os.devnull, os.O_WRONLY), os.dup(2)
    os.dup2(quiet, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(quiet)
