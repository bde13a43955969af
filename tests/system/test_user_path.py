"""The path users take: each long command with its default display, in a terminal and into a file.

Every command runs as a separate process, as typed: once in a pseudo-terminal (its live
display on) and once with its output to a file, where no number of its tables may be cut.
The Ray commands join the session's Ray (``--address``) to keep the suite fast.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from io import StringIO
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tuneprune.search import prepare_search, run_search
from tuneprune.tracking import RunTracker

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\r")


def run_in_pty(args: list[str], cwd: Path, columns: int = 100) -> tuple[int, str]:
    """Run ``args`` with stdin, stdout and stderr on a pseudo-terminal; its exit code and output (ANSI stripped)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the terminal closed with the process
                    break
                if not data:
                    break
                output += data
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
    return code, ANSI.sub("", output.decode(errors="replace"))


def run_to_file(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run ``args`` with stdout and stderr into one file; its exit code and the file's text."""
    log = cwd / "output.log"
    with open(log, "w") as fh:
        code = subprocess.run(
            args, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=TIMEOUT_S
        ).returncode
    return code, log.read_text()


def tuneprune(*args: object) -> list[str]:
    return [sys.executable, "-m", "tuneprune.cli", *map(str, args)]


def commands(ray_address: str, dense_model: Path) -> dict[str, tuple[list[str], str, str]]:
    """Command name -> (argv, the title of its final table, a pattern of what its live display shows)."""
    model = str(dense_model)
    return {
        "search": (
            tuneprune("search", ROOT / "search_spaces/digits_demo.yaml", "--address", ray_address, "--num-samples", 1,
                      "--set", "grid.sparsity.target=[0.95]", "--set", "base.epochs=1"),
            "digits_demo: best trials", r"trials done\W+1/1",
        ),
        "packed search": (
            tuneprune("search", ROOT / "search_spaces/digits_demo.yaml", "--address", ray_address, "--num-samples", 1,
                      "--set", "base.epochs=1", "--set", "resources.pack=2"),
            "digits_demo: best trials", r"trials done\W+2/2",
        ),
        "evolve": (
            tuneprune("evolve", ROOT / "search_spaces/evolve_digits.yaml", "--address", ray_address, "--checkpoint", model,
                      "--set", "algorithm.generations=1", "--set", "algorithm.pop_size=4", "--set", "samples=2"),
            "evolve-digits: Pareto front (validation accuracy, median of 2 samples)", r"evolve .*1/1",
        ),
        "train": (tuneprune("train", ROOT / "configs/digits_dense.yaml", "--set", "epochs=1"), "test_acc", r"train .*1/1"),
        "relevance": (
            tuneprune("relevance", ROOT / "configs/relevance_digits.yaml", "--checkpoint", model, "--set", "percentages=[30,60]",
                      "--set", "rankings=[parameter]", "--set", "deltas=[0.5]", "--set", "relevance.eval_samples=32"),
            "relevance_digits: test accuracy by % of channels pruned", r"rankings .*2/2",
        ),
        "prune-stochastic": (
            tuneprune("prune-stochastic", ROOT / "configs/stochastic_digits.yaml", "--checkpoint", model,
                      "--set", "samples=2", "--set", "finetune.epochs=0"),
            "Stochastic Pruning: sigma=0.005 rate=0.9 samples=2", "pruning: 2 noisy samples",
        ),
    }  # fmt: skip


@pytest.fixture(scope="module")
def ray_address(ray_session) -> str:
    return ray_session.get_runtime_context().gcs_address


COMMANDS = ("search", "evolve", "train", "relevance", "prune-stochastic")


@pytest.mark.ray
@pytest.mark.parametrize("mode", ["terminal", "file"])
@pytest.mark.parametrize("name", COMMANDS)
def test_command_as_typed_ends_with_its_full_table(name, mode, ray_address, dense_digits, tmp_path):
    """In a terminal its live display shows; into a file no redraws, and no number is cut."""
    args, table_title, display = commands(ray_address, dense_digits[0])[name]
    code, output = run_in_pty(args, tmp_path) if mode == "terminal" else run_to_file(args, tmp_path)
    assert code == 0, output[-3000:]
    assert "Traceback" not in output
    assert table_title in output, output[-3000:]
    assert "…" not in output, output  # rich's ellipsis: a column narrowed to fit
    if mode == "terminal":
        assert re.search(display, output), output[-3000:]
    else:
        assert "\x1b[" not in output  # no live redraws in a file
    for path in re.findall(r"^results:\s+(\S+)", output, re.MULTILINE):
        assert Path(path).is_absolute()
        assert Path(path).is_dir()


@pytest.mark.ray
def test_packed_search_as_typed_shows_its_members(ray_address, dense_digits, tmp_path):
    """A pack's members are counted one by one in the live display, and the search ends with its table."""
    args, table_title, display = commands(ray_address, dense_digits[0])["packed search"]
    code, output = run_in_pty(args, tmp_path)
    assert code == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "in packs of 2" in output, output[-3000:]
    assert table_title in output, output[-3000:]
    assert re.search(display, output), output[-3000:]


def test_search_monitor_pickles_without_its_live_display(tmp_path, monkeypatch):
    """Ray pickles the Tuner's callbacks: a monitor whose display runs must still pickle."""
    from rich.console import Console

    import tuneprune.output.progress
    from tuneprune.search.monitor import SearchMonitor

    written = StringIO()
    terminal = Console(file=written, force_terminal=True)
    monkeypatch.setattr(tuneprune.output.progress, "console", lambda: terminal)
    monitor = SearchMonitor(RunTracker(f"sqlite:///{tmp_path / 'm.db'}"), {"val_acc": "max"}, 4, show=True)
    monitor.setup()
    assert monitor._display is not None
    assert monitor._display._live is not None
    try:
        copy = pickle.loads(pickle.dumps(monitor))
    finally:
        monitor.close()
    assert copy._display is None
    assert copy.total == 4
    assert "trials done" in written.getvalue()


def write_space(tmp_path: Path, name: str) -> Path:
    doc = {
        "name": name,
        "base": {"model": "small_cnn", "dataset": "digits", "epochs": 1, "batch_size": 64},
        "params": {"lr": {"type": "float", "low": 0.01, "high": 0.1}},
        "num_samples": 1,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def parent_run(stores: dict, name: str):
    return RunTracker(stores["tracking_uri"]).find_parent(name, "search")


@pytest.mark.ray
def test_search_that_raises_ends_its_parent_run_failed(ray_session, tmp_path, stores):
    prepared = prepare_search(write_space(tmp_path, "broken"), **stores)
    prepared.results_dir.mkdir(parents=True)
    (prepared.results_dir / "ray").write_text("a file where Ray Tune's storage directory goes")
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever Ray raises for it
        run_search(prepared, progress=False)
    run = MlflowClient(stores["tracking_uri"]).get_run(parent_run(stores, "broken").info.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"]


def test_interrupted_search_ends_its_parent_run_killed(tmp_path, stores, monkeypatch):
    import tuneprune.search.runner

    def interrupt(address):  # Ctrl-C while Ray starts
        raise KeyboardInterrupt

    monkeypatch.setattr(tuneprune.search.runner, "ensure_ray", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_search(prepare_search(write_space(tmp_path, "interrupted"), **stores), progress=False)
    run = MlflowClient(stores["tracking_uri"]).get_run(parent_run(stores, "interrupted").info.run_id)
    assert run.info.status == "KILLED"


@pytest.mark.parametrize("command", ["search", "evolve"])
def test_resume_of_a_name_never_used_exits_2_naming_the_stores(command, tmp_path):
    space = ROOT / ("search_spaces/digits_demo.yaml" if command == "search" else "search_spaces/evolve_digits.yaml")
    out = subprocess.run(
        tuneprune(command, space, "--resume", "--name", "never-ran"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert "never-ran" in out.stderr
    looked_in = [str(tmp_path / ("optuna.db" if command == "search" else "runs")), str(tmp_path / "mlruns.db")]
    assert all(place in out.stderr for place in looked_in), out.stderr
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "mlruns.db").exists()
