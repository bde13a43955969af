"""Default locations of the MLflow store and the Optuna storage, and fail-fast reachability checks."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from tuneprune.shared.config import ConfigError

CHECK_TIMEOUT_S = 5.0


def default_tracking_uri(workdir: str | Path = ".") -> str:
    """``sqlite:///<absolute workdir>/mlruns.db``: absolute, so Ray workers in other directories agree."""
    return f"sqlite:///{Path(workdir).resolve() / 'mlruns.db'}"


def default_storage_url(workdir: str | Path = ".") -> str:
    """The Optuna study storage beside the MLflow store."""
    return f"sqlite:///{Path(workdir).resolve() / 'optuna.db'}"


def absolute_sqlite(url: str) -> str:
    """``url`` with a relative SQLite path made absolute, from the working directory (``sqlite:///mlruns.db``,
    MLflow's own form): Ray runs each trial in a directory of its own, where that path names another file."""
    path = url.removeprefix("sqlite:///")
    relative = url.startswith("sqlite:///") and path not in ("", ":memory:") and not Path(path).is_absolute()
    return f"sqlite:///{Path(path).resolve()}" if relative else url


def store_missing(url: str) -> bool:
    """A SQLite store (MLflow or Optuna) whose file does not exist: opening it would create an empty one."""
    return url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file()


def check_port_reachable(field: str, value: str, host: str, port: int) -> None:
    """Raise a one-line :class:`ConfigError` naming ``field = value`` if ``host:port`` takes no TCP connection
    within ``CHECK_TIMEOUT_S``."""
    try:
        with socket.create_connection((host, port), timeout=CHECK_TIMEOUT_S):
            pass
    except OSError as err:
        raise ConfigError(f"{field} = {value!r}: cannot reach {host}:{port} ({err.strerror or err})") from None


def _check_database(url: str, field: str) -> None:
    """Reach the host's port, then open and close one connection with SQLAlchemy, bounded by a connect timeout."""
    import sqlalchemy

    parsed = urlparse(url)
    if parsed.hostname:
        port = parsed.port or {"postgresql": 5432, "mysql": 3306}.get(parsed.scheme.split("+")[0], 5432)
        check_port_reachable(field, url, parsed.hostname, port)
    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": int(CHECK_TIMEOUT_S)})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as err:  # driver errors differ per database
        raise ConfigError(f"{field} = {url!r}: cannot connect ({str(err).splitlines()[0][:160]})") from None


def _check_database_url(url: str, field: str, unsupported: str) -> None:
    """A SQLite URL whose directory exists, or a PostgreSQL / MySQL database that answers; else ``unsupported``."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        path = Path(url.split(":///", 1)[1]) if ":///" in url else None
        if path is None or str(path) in ("", ":memory:"):
            raise ConfigError(f"{field} = {url!r}: use sqlite:///ABSOLUTE/PATH.db")
        if not path.parent.is_dir():
            raise ConfigError(f"{field} = {url!r}: directory {path.parent} does not exist")
    elif scheme.startswith(("postgresql", "mysql")):
        _check_database(url, field)
    else:
        raise ConfigError(f"{field} = {url!r}: {unsupported}")


def check_tracking_reachable(uri: str) -> None:
    """Raise a one-line :class:`ConfigError` within about 10 s if MLflow cannot be reached at ``uri``."""
    field = "tracking_uri"
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=CHECK_TIMEOUT_S) as resp:
                if resp.status != 200:
                    raise ConfigError(f"{field} = {uri!r}: /health answered {resp.status}")
        except OSError as err:  # URLError included
            reason = getattr(err, "reason", err)
            raise ConfigError(f"{field} = {uri!r}: MLflow server unreachable ({reason})") from None
    elif scheme in ("", "file"):
        path = Path(urlparse(uri).path if scheme else uri)
        if not path.parent.is_dir():
            raise ConfigError(f"{field} = {uri!r}: directory {path.parent} does not exist")
    else:
        _check_database_url(uri, field, "unsupported scheme, use sqlite:///, http(s)://, postgresql:// or a path")


def check_storage_reachable(url: str) -> None:
    """Raise a one-line :class:`ConfigError` if the Optuna storage URL cannot be used."""
    _check_database_url(url, "storage", "unsupported, use sqlite:///PATH.db or postgresql://USER@HOST/DB")
