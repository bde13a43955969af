"""Default store locations and the fail-fast reachability checks, against real files, ports and HTTP servers."""

from __future__ import annotations

import http.server
import threading

import pytest

from tuneprune.shared.config import ConfigError
from tuneprune.tracking import (
    check_storage_reachable,
    check_tracking_reachable,
    default_storage_url,
    default_tracking_uri,
    store_missing,
)

CLOSED = "127.0.0.1:9"  # discard: nothing listens there


def test_default_stores_are_absolute_paths_in_the_workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlruns.db"
    assert default_storage_url("sub") == f"sqlite:///{tmp_path.resolve()}/sub/optuna.db"


def test_a_store_is_missing_only_when_its_sqlite_file_is(tmp_path):
    url = f"sqlite:///{tmp_path}/mlruns.db"
    assert store_missing(url)
    (tmp_path / "mlruns.db").touch()
    assert not store_missing(url)
    assert not store_missing("http://127.0.0.1:5000")


@pytest.mark.parametrize("check", [check_tracking_reachable, check_storage_reachable])
def test_a_sqlite_store_in_an_existing_directory_is_reachable(check, tmp_path):
    check(f"sqlite:///{tmp_path}/new.db")  # the file need not exist yet


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("sqlite:////no/such/dir/mlruns.db", "directory /no/such/dir does not exist"),
        ("sqlite:///:memory:", "use sqlite:///ABSOLUTE/PATH.db"),
        ("/no/such/dir/mlruns", "directory /no/such/dir does not exist"),
        ("file:///no/such/dir/mlruns", "directory /no/such/dir does not exist"),
        ("ftp://host/mlruns", "unsupported scheme"),
        (f"http://{CLOSED}", "MLflow server unreachable"),
        (f"postgresql://user@{CLOSED}/mlflow", f"cannot reach {CLOSED}"),
    ],
)
def test_an_unusable_tracking_uri_is_one_line_naming_it(uri, message):
    with pytest.raises(ConfigError) as caught:
        check_tracking_reachable(uri)
    assert str(caught.value).startswith(f"tracking_uri = {uri!r}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://host/0", "unsupported, use sqlite:///PATH.db"),
        (f"postgresql://user@{CLOSED}/optuna", f"cannot reach {CLOSED}"),
        ("sqlite:////no/such/dir/optuna.db", "does not exist"),
    ],
)
def test_an_unusable_storage_is_one_line_naming_it(url, message):
    with pytest.raises(ConfigError, match=f"^storage = {url!r}: .*{message}"):
        check_storage_reachable(url)


@pytest.fixture
def health_server():
    """A local HTTP server whose ``/health`` answers with the status the test sets."""
    answer = {"status": 200}

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(answer["status"] if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", answer
    server.shutdown()
    server.server_close()


def test_a_tracking_server_is_reachable_when_its_health_answers_200(health_server):
    uri, answer = health_server
    check_tracking_reachable(uri + "/")
    answer["status"] = 204
    with pytest.raises(ConfigError, match="/health answered 204"):
        check_tracking_reachable(uri)
    answer["status"] = 503
    with pytest.raises(ConfigError, match="MLflow server unreachable"):
        check_tracking_reachable(uri)
