"""Joining Ray: connect to a cluster by address, or start a local Ray when none is running.

Shared by everything that runs work on Ray (the search, the evolution); telemetry stays
off in the workers as in the driver.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from tuneprune.cluster.quiet import TELEMETRY


def ensure_ray(address: str | None) -> float:
    """Connect to ``address`` or start a local Ray unless one is up; returns seconds taken."""
    import ray

    t0 = time.perf_counter()
    if not ray.is_initialized():
        env = {k: os.environ[k] for k in TELEMETRY if k in os.environ}
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                logging_level=logging.ERROR,
                log_to_driver=False,
                runtime_env={"env_vars": env},
            )
        except SystemExit as err:  # ray.init's own SIGTERM handler exits: a kill while joining
            if err.code != signal.SIGTERM:
                raise
            raise KeyboardInterrupt(signal.SIGTERM.name) from None
        finally:
            interrupt_on_sigterm()  # again: ray.init replaces it
    return time.perf_counter() - t0


def check_ray_reachable(address: str | None) -> None:
    """Refuse, in one line, a cluster address whose HOST:PORT takes no connection: ``--address``, or for ``auto``
    the ``RAY_ADDRESS`` it reads (``auto`` without it finds a node of this machine, as Ray does). ``ray.init`` would
    try it for minutes, and fail with a traceback. Forms other than HOST:PORT (``ray://HOST:PORT`` included) are
    Ray's to judge."""
    from tuneprune.tracking.locations import check_port_reachable

    field, value = ("RAY_ADDRESS", os.environ.get("RAY_ADDRESS")) if address == "auto" else ("address", address)
    host, _, port = (value or "").removeprefix("ray://").rpartition(":")
    if value and host and port.isdigit():
        check_port_reachable(field, value, host.strip("[]"), int(port))


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interrupt_on_sigterm() -> None:
    """``kill`` (SIGTERM, a job scheduler's stop) interrupts the command as Ctrl-C does: its MLflow runs end KILLED
    and it exits 130, instead of dying with them RUNNING (Python's default) or FAILED (``ray.init``'s handler,
    ``sys.exit``). Signal handlers are set in the main thread only."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)


def check_local_resources(cpu: float, gpu: float) -> None:
    """Refuse per-task resources that a local Ray on this machine could never grant.

    Without this a trial asking for a GPU on a machine without one waits forever. Only for
    the local Ray a command starts itself: a cluster (``--address``) may autoscale.
    """
    import torch

    from tuneprune.shared.config import ConfigError

    gpus = torch.cuda.device_count()
    if gpu > gpus:
        raise ConfigError(
            f"resources.gpu = {gpu}: this machine has {gpus} GPU(s); use --set resources.gpu=0 or --address a cluster"
        )
    cpus = os.cpu_count() or 1
    if cpu > cpus:
        raise ConfigError(
            f"resources.cpu = {cpu}: this machine has {cpus} CPU(s); use --set resources.cpu={cpus} or fewer"
        )
