"""configure_quiet: telemetry and the libraries' own output off, unless the user set otherwise."""

from __future__ import annotations

import os

from tuneprune.cluster.quiet import OUTPUT, TELEMETRY, configure_quiet


def test_quiet_settings_fill_in_what_the_user_did_not_set(monkeypatch):
    for name in {**TELEMETRY, **OUTPUT}:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")  # the user's choice
    configure_quiet()
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "1"
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert os.environ["DO_NOT_TRACK"] == "1"
    assert all(os.environ[name] == value for name, value in OUTPUT.items())
