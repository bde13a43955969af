"""Joining Ray: connect to a cluster by address, or start a local Ray when none is running.

Shared by everything that runs work on Ray (the search, the evolution); telemetry stays
off in the workers as in the driver.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

from tuneprune.cluster.quiet import TELEMETRY, native_stderr_silenced


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
    """Refuse, in one line, a cluster address whose HOST:PORT takes no connection, or whose head refuses this
    driver's auth token (:func:`check_ray_token`): ``--address``, or for ``auto`` the ``RAY_ADDRESS`` it reads (``auto``
    without it finds a node of this machine, as Ray does). ``ray.init`` would try it for minutes, and fail with a
    traceback. Forms other than HOST:PORT (``ray://HOST:PORT`` included) are Ray's to judge."""
    from tuneprune.tracking.locations import check_port_reachable

    field, value = ("RAY_ADDRESS", os.environ.get("RAY_ADDRESS")) if address == "auto" else ("address", address)
    host, _, port = (value or "").removeprefix("ray://").rpartition(":")
    if value and host and port.isdigit():
        check_port_reachable(field, value, host.strip("[]"), int(port))
        if not value.startswith("ray://"):
            check_ray_token(field, value, host.strip("[]"), int(port))


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # and an empty SETTINGS frame
GCS_ANSWER_S = 1.0  # a Ray head answers HTTP/2 in milliseconds


def check_ray_token(field: str, value: str, host: str, port: int) -> None:
    """Refuse, in one line, a Ray head (its GCS at ``host:port``) that refuses this driver's auth token: ``ray.init``
    would try it for 20 s, and fail with a traceback. Asked with Ray's own client of the GCS, and only of a head that
    answers gRPC's HTTP/2 at once: one that takes connections and says nothing is ``ray.init``'s to wait for."""
    from ray.exceptions import AuthenticationError

    from tuneprune.shared.config import ConfigError
    from tuneprune.tracking.locations import CHECK_TIMEOUT_S

    try:
        with socket.create_connection((host, port), timeout=CHECK_TIMEOUT_S) as probe:
            probe.sendall(HTTP2_PREFACE)
            probe.settimeout(GCS_ANSWER_S)
            if not probe.recv(9):  # the server's SETTINGS frame
                return
    except OSError:  # no answer at once
        return
    try:  # Ray's private client: another Ray release without it leaves the judgement to ray.init
        from ray._raylet import InnerGcsClient  # type: ignore[attr-defined]  # ray.init's client of the GCS

        with native_stderr_silenced():
            InnerGcsClient.standalone(value, None, int(CHECK_TIMEOUT_S * 1000))
    except AuthenticationError:
        raise ConfigError(
            f"{field} = {value!r}: the Ray cluster refuses this driver's auth token; give the driver the cluster's "
            "token (RAY_AUTH_TOKEN, or the file RAY_AUTH_TOKEN_PATH names, else ~/.ray/auth_token) and "
            "RAY_AUTH_MODE=token"
        ) from None
    except Exception:  # any other refusal is ray.init's to report, as it did
        return


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
