"""check_local_resources: per-task resources a local Ray could never grant are refused before it starts; ensure_ray:
a kill while joining a cluster interrupts as Ctrl-C; check_ray_reachable: a head refusing the driver's Ray auth token
is refused before anything starts."""

from __future__ import annotations

import os

import pytest

from tuneprune.cluster.join import check_local_resources
from tuneprune.shared.config import ConfigError

CPUS = os.cpu_count() or 1


def test_resources_this_machine_has_are_accepted():
    check_local_resources(1, 0)
    check_local_resources(CPUS, 0)


def test_more_gpus_than_the_machine_has_are_refused():
    import torch

    gpus = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=f"resources.gpu = {gpus + 1}: this machine has {gpus} GPU"):
        check_local_resources(1, gpus + 1)


def test_more_cpus_than_the_machine_has_are_refused():
    with pytest.raises(ConfigError, match=f"this machine has {CPUS} CPU\\(s\\); use --set resources.cpu={CPUS}"):
        check_local_resources(CPUS + 1, 0)


@pytest.mark.slow
def test_kill_while_joining_a_cluster_ends_the_search_killed_exit_130(tmp_path):
    """``kill`` (SIGTERM) of a search waiting in ``ray.init`` for a head that does not answer yet: the parent run ends
    KILLED and the command exits 130, as at any other moment (``ray.init``'s own handler made it FAILED, exit 15).
    Ray reads signals between its attempts to connect: this waits some 40 s."""
    import signal
    import socket
    import subprocess
    import sys

    import yaml
    from mlflow.tracking import MlflowClient

    space = tmp_path / "joining.yaml"
    base = {"model": "small_cnn", "dataset": "digits", "epochs": 1}
    lr = {"type": "float", "low": 0.01, "high": 0.1}
    space.write_text(yaml.safe_dump({"base": base, "params": {"lr": lr}, "resources": {"cpu": 1, "gpu": 0}}))
    tracking = f"sqlite:///{tmp_path / 'mlruns.db'}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes connections, never answers
        cmd = [sys.executable, "-m", "tuneprune.cli", "search", str(space), "--no-progress",
               "--address", f"127.0.0.1:{silent.getsockname()[1]}", "--tracking-uri", tracking,
               "--storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--results-dir", str(tmp_path / "runs")]  # fmt: skip
        driver = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
        assert driver.stderr is not None
        for line in driver.stderr:
            if "Failed to connect to GCS" in line:  # Ray's warning, 5 s into ray.init
                break
        driver.send_signal(signal.SIGTERM)
        driver.stderr.read()
        assert driver.wait(timeout=180) == 130
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("tuneprune")
    assert experiment is not None
    (parent,) = client.search_runs([experiment.experiment_id])
    assert parent.info.status == "KILLED"


@pytest.mark.ray
def test_a_driver_whose_ray_token_the_cluster_refuses_exits_2_before_its_parent_run(tmp_path):
    """A driver given the address of a head started with token authentication (docs/cluster.md: RAY_AUTH_MODE=token),
    with another token or none: one line naming the token, exit code 2, before any MLflow run exists (``ray.init``
    tried for 20 s, then a traceback, exit 1, the parent run FAILED)."""
    import secrets
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import yaml

    from tests.system.test_cluster import SCRIPTS, free_ports, run_script

    space = tmp_path / "token.yaml"
    base = {"model": "small_cnn", "dataset": "digits", "epochs": 1}
    space.write_text(yaml.safe_dump({"base": base, "params": {"lr": {"type": "float", "low": 0.01, "high": 0.1}}}))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_USAGE_STATS_ENABLED="0", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1",
               RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))  # fmt: skip
    nodes = Path(tempfile.mkdtemp(prefix="tp-rt-", dir="/tmp"))  # short: Ray's socket paths live below
    ports: set[int] = set()
    gcs = free_ports(1, ports)
    script = SCRIPTS / "cluster" / "ray-node.sh"
    try:
        run_script(script, "head", "--dir", nodes / "h", "--port", gcs, "--ports", free_ports(100, ports),
                   "--num-cpus", 1, env=env)  # fmt: skip
        for driver_env in ({**env, "RAY_AUTH_TOKEN": secrets.token_hex(16)}, {**env, "RAY_AUTH_MODE": "disabled"}):
            cmd = [sys.executable, "-m", "tuneprune.cli", "search", str(space), "--no-progress",
                   "--address", f"127.0.0.1:{gcs}", "--tracking-uri", f"sqlite:///{tmp_path / 'mlruns.db'}",
                   "--storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--results-dir", str(tmp_path / "runs")]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, env=driver_env, cwd=tmp_path, timeout=120)
            refused = (
                f"tuneprune search: error: address = '127.0.0.1:{gcs}': the Ray cluster refuses this driver's auth "
                "token; give the driver the cluster's token (RAY_AUTH_TOKEN, or the file RAY_AUTH_TOKEN_PATH names, "
                "else ~/.ray/auth_token) and RAY_AUTH_MODE=token"
            )
            assert (out.returncode, out.stderr.splitlines()) == (2, [refused])
            assert not (tmp_path / "mlruns.db").exists()  # no parent run was opened
    finally:
        run_script(script, "stop", "--dir", nodes / "h", "--grace", "5", env=env, check=False)
        shutil.rmtree(nodes, ignore_errors=True)
