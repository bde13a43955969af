"""A report's source when its MLflow tracking server is out of reach: one line within seconds, not minutes of retries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "http://127.0.0.1:1"  # nothing listens on port 1: connections are refused at once


def tuneprune(*args: str, cwd) -> subprocess.CompletedProcess:
    """The CLI in a fresh process; the old code retried the server for minutes (MLflow's HTTP retries)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "tuneprune.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


def results_directory(tmp_path):
    """A finished search's results directory (its summary), recorded on the unreachable server."""
    directory = tmp_path / "runs" / "far"
    directory.mkdir(parents=True)
    summary = {"name": "far", "parent_run_id": "0" * 32, "tracking_uri": UNREACHABLE, "objectives": {"val_acc": "max"},
               "trials": [], "best": []}  # fmt: skip
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


def test_report_of_a_search_on_an_unreachable_server_exits_2_in_one_line(tmp_path):
    proc = tuneprune("report", str(results_directory(tmp_path)), cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"tuneprune report: error: tracking_uri = '{UNREACHABLE}': MLflow server unreachable")


def test_a_name_looked_up_on_an_unreachable_server_exits_2_in_one_line(tmp_path):
    proc = tuneprune("report", "far", "--tracking-uri", UNREACHABLE, cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"tuneprune report: error: tracking_uri = '{UNREACHABLE}': MLflow server unreachable")
