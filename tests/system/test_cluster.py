"""Cluster mode (issue): a multi-node Ray cluster, an MLflow server on PostgreSQL, a shared Optuna study.

Everything is a real process on 127.0.0.1, started and stopped by the scripts users run:
``scripts/cluster/ray-node.sh`` (a head and a worker node, 1 CPU each, their own temp dirs
and ports), ``scripts/postgres.sh`` (a throw-away PostgreSQL cluster) and
``scripts/mlflow-server.sh`` (served artifacts). Other tests of the session run their own
in-process local Ray, so every search here runs in a subprocess driver
(``python -m tuneprune.cli search ... --address``), as a user would run it on a cluster.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
SEARCH_TIMEOUT_S = 420
BASE = {"model": "small_cnn", "dataset": "digits", "epochs": 2, "batch_size": 64}


# -- helpers ------------------------------------------------------------------------------
def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, taken: set[int]) -> int:
    """The first of ``count`` consecutive free loopback ports, none of them in ``taken``."""
    for _ in range(200):
        base = secrets.randbelow(20000) + 21000
        block = set(range(base, base + count))
        if not block & taken and all(_free(p) for p in block):
            taken |= block
            return base
    raise RuntimeError("no free block of ports")


def run_script(*args, env=None, timeout=240, check=True) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


def write_space(directory: Path, name: str, **fields) -> Path:
    doc = {
        "name": name,
        "base": BASE,
        "params": {"lr": {"type": "float", "low": 0.01, "high": 0.3, "log": True}},
        "num_samples": 2,
        "max_concurrent": 2,
        "resources": {"cpu": 1, "gpu": 0},
    }
    doc.update(fields)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def search_cmd(space: Path, *args) -> list[str]:
    return [sys.executable, "-m", "tuneprune.cli", "search", str(space), "--no-progress", *map(str, args)]


def check_search(out: subprocess.CompletedProcess) -> None:
    assert out.returncode == 0, f"search exited {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"


def pg_bin() -> str | None:
    """PostgreSQL server binaries: $TUNEPRUNE_TEST_PG_BIN (set by scripts/test.sh), else Debian's or PATH."""
    if os.environ.get("TUNEPRUNE_TEST_PG_BIN"):
        return os.environ["TUNEPRUNE_TEST_PG_BIN"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return str(Path(found[-1]).parent)
    initdb = shutil.which("initdb")
    return str(Path(initdb).parent) if initdb else None


# -- fixtures: one cluster, one database and one tracking server for the module --------------
@pytest.fixture(scope="module")
def ports():
    return set()


@pytest.fixture(scope="module")
def cluster_env():
    """The environment of every node and driver: telemetry off, one Ray auth token (not ~/.ray's)."""
    env = dict(os.environ)
    env.update(
        RAY_USAGE_STATS_ENABLED="0", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1",
        RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
    )  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture(scope="module")
def two_nodes(cluster_env, ports):
    """A head and a worker node (1 CPU each) as separate `ray start` processes on 127.0.0.1, one pair for the
    module; ``kill_worker`` kills the worker node (SIGKILL, its process group), and the next test that asks
    for ``ray_cluster`` gets a fresh worker node in its place."""
    base = Path(tempfile.mkdtemp(prefix="tp-rc-", dir="/tmp"))  # short: Ray's socket paths live below
    head = base / "h"
    node_dirs = [head]
    leaders: list[int] = []
    gcs = free_ports(1, ports)
    script = SCRIPTS / "cluster" / "ray-node.sh"
    address = f"127.0.0.1:{gcs}"

    def start_worker() -> None:
        worker = base / f"w{len(node_dirs)}"
        node_dirs.append(worker)
        run_script(script, "worker", "--dir", worker, "--address", address, "--ports", free_ports(100, ports),
                   "--num-cpus", 1, env=cluster_env)  # fmt: skip
        leaders.append(int((worker / "ray.pid").read_text()))
        nodes = {(node / "node_id").read_text().strip() for node in (head, worker)}
        assert len(nodes) == 2, nodes
        assert all(len(n) == 56 for n in nodes), nodes
        cluster.update(nodes=nodes, worker=worker, worker_killed=False)

    def kill_worker() -> str:
        """SIGKILL the worker node's process group; its node id."""
        cluster["worker_killed"] = True
        os.killpg(int((cluster["worker"] / "ray.pid").read_text()), signal.SIGKILL)
        return (cluster["worker"] / "node_id").read_text().strip()

    cluster: dict = {"address": address, "env": cluster_env, "start_worker": start_worker, "kill_worker": kill_worker}
    try:
        run_script(script, "head", "--dir", head, "--port", gcs, "--ports", free_ports(100, ports),
                   "--num-cpus", 1, env=cluster_env)  # fmt: skip
        leaders.append(int((head / "ray.pid").read_text()))
        start_worker()
        yield cluster
    finally:  # all nodes at once: each waits up to --grace seconds for Ray to drain
        stops = [subprocess.Popen([str(script), "stop", "--dir", str(node), "--grace", "5"], env=cluster_env)
                 for node in reversed(node_dirs)]  # fmt: skip
        for proc in stops:
            proc.wait(timeout=60)
        shutil.rmtree(base, ignore_errors=True)
    for pid in leaders:  # `stop` ended each node's process group, and nothing else
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


@pytest.fixture
def ray_cluster(two_nodes):
    """The module's two nodes, both up: a worker node killed by an earlier test is replaced first."""
    if two_nodes["worker_killed"]:
        two_nodes["start_worker"]()
    return two_nodes


@pytest.fixture(scope="module")
def postgres(ports):
    binaries = pg_bin()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql, or set TUNEPRUNE_TEST_PG_BIN)")
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam(os.environ.get("PG_OS_USER", "postgres"))
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run PostgreSQL as (set PG_OS_USER)")
    try:
        import psycopg  # noqa: F401  (SQLAlchemy's driver for postgresql:// URLs)
    except ImportError:
        pytest.skip("no PostgreSQL driver: pip install 'psycopg[binary]'")
    directory = Path(tempfile.mkdtemp(prefix="tp-pg-", dir="/tmp"))  # reachable by the postgres user
    port = free_ports(1, ports)
    env = {**os.environ, "PG_BIN": binaries}

    def restart() -> None:
        run_script(SCRIPTS / "postgres.sh", "stop", "--dir", directory, env=env)
        run_script(SCRIPTS / "postgres.sh", "start", "--dir", directory, "--port", port, "--fast", env=env)

    try:
        run_script(SCRIPTS / "postgres.sh", "start", "--dir", directory, "--port", port, "--fast", env=env)
        yield {
            "restart": restart,
            "dir": directory,
            "pgpassfile": str(directory / "pgpass"),
            "optuna": f"postgresql://tuneprune@127.0.0.1:{port}/optuna",
            "mlflow": f"postgresql://tuneprune@127.0.0.1:{port}/mlflow",
        }
    finally:
        run_script(SCRIPTS / "postgres.sh", "stop", "--dir", directory, env=env, check=False)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def mlflow_server(postgres, ports):
    directory = Path(tempfile.mkdtemp(prefix="tp-mlflow-"))
    port = free_ports(1, ports)
    env = {**os.environ, "PGPASSFILE": postgres["pgpassfile"]}

    def start() -> None:
        run_script(SCRIPTS / "mlflow-server.sh", "start", "--backend-store-uri", postgres["mlflow"], "--port", port,
                   "--dir", directory, "--workers", 1, "--timeout", 180, env=env, timeout=240)  # fmt: skip

    try:
        start()
        yield {
            "uri": f"http://127.0.0.1:{port}",
            "artifacts": directory / "artifacts",
            "dir": directory,
            "start": start,
        }
    finally:
        run_script(SCRIPTS / "mlflow-server.sh", "stop", "--dir", directory, env=env, check=False)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pg_env(ray_cluster, postgres):
    """A driver's environment with the database password file, as on a cluster's login node."""
    return {**ray_cluster["env"], "PGPASSFILE": postgres["pgpassfile"]}


def client_for(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


# -- tests ------------------------------------------------------------------------------------
def dead(pid: int) -> bool:
    """Whether process ``pid`` is gone or a zombie (killed, not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def wait_until_dead(pid: int, timeout_s: float = 60) -> None:
    deadline = time.time() + timeout_s
    while not dead(pid):
        assert time.time() < deadline, f"process {pid} still alive {timeout_s} s after SIGKILL"
        time.sleep(0.1)


def test_a_killed_unreaped_service_is_not_running(tmp_path):
    """The service scripts (scripts/cluster/lib.sh ``tp_alive``) take a killed process its parent has not reaped
    yet (a zombie) for stopped, so that the service can be started again at once."""
    child = os.fork()
    if child == 0:
        os._exit(0)
    try:
        time.sleep(0.2)
        assert dead(child)
        status = {}
        for name, pid in {"zombie": child, "live": os.getpid()}.items():
            (tmp_path / "pid").write_text(str(pid))
            out = subprocess.run(
                ["bash", "-c", f'source "{SCRIPTS}/cluster/lib.sh"; tp_alive "$0" && echo alive', tmp_path / "pid"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            status[name] = out.stdout.strip() or "stopped"
        assert status == {"zombie": "stopped", "live": "alive"}
    finally:
        os.waitpid(child, 0)


def documented_env(section: str) -> dict[str, str]:
    """The environment after the ``export`` lines of the first shell block under ``section`` in docs/cluster.md."""
    text = (ROOT / "docs" / "cluster.md").read_text()
    block = text.split(f"\n{section}\n", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    exports = [line for line in block.splitlines() if line.startswith("export ")]
    dump = subprocess.run(["bash", "-c", "\n".join([*exports, "env -0"])], capture_output=True, text=True, check=True)
    return dict(item.split("=", 1) for item in dump.stdout.split("\0") if "=" in item)


def test_nodes_and_a_driver_started_as_documented_form_one_cluster(ports, tmp_path):
    """docs/cluster.md, step 1: a head node, a worker node and a driver (``--address auto`` through ``RAY_ADDRESS``)
    started with the environment the docs export connect: the head enables Ray's token authentication by itself,
    and a worker node or a driver given its address must use it too."""
    base = Path(tempfile.mkdtemp(prefix="tp-rd-", dir="/tmp"))  # short: Ray's socket paths live below
    gcs = free_ports(1, ports)
    env = {**documented_env("## Step 1: one machine, real services"), "RAY_ADDRESS": f"127.0.0.1:{gcs}"}
    script = SCRIPTS / "cluster" / "ray-node.sh"
    try:
        run_script(script, "head", "--dir", base / "h", "--port", gcs, "--ports", free_ports(100, ports),
                   "--num-cpus", 1, env=env)  # fmt: skip
        worker = run_script(script, "worker", "--dir", base / "w", "--address", f"127.0.0.1:{gcs}", "--ports",
                            free_ports(100, ports), "--num-cpus", 1, env=env, check=False)  # fmt: skip
        assert worker.returncode == 0, f"the worker node did not join: {worker.stderr[-2000:]}"
        nodes = "import ray; ray.init(address='auto'); print(sum(n['Alive'] for n in ray.nodes()))"
        driver = run_script(sys.executable, "-c", nodes, env=env, timeout=120, check=False)
        assert driver.stdout.split()[-1:] == ["2"], f"the driver did not connect: {driver.stderr[-2000:]}"
    finally:
        for node in ("w", "h"):
            if (base / node / "ray.pid").exists():
                run_script(script, "stop", "--dir", base / node, "--grace", "5", env=env, check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_search_trials_land_on_both_nodes(ray_cluster, tmp_path):
    space = write_space(tmp_path, "twonodes", num_samples=2)
    tracking = f"sqlite:///{tmp_path / 'mlruns.db'}"
    out = subprocess.run(
        search_cmd(space, "--address", ray_cluster["address"], "--tracking-uri", tracking,
                   "--storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--results-dir", tmp_path / "runs"),
        capture_output=True, text=True, env=ray_cluster["env"], cwd=tmp_path, timeout=SEARCH_TIMEOUT_S,
    )  # fmt: skip
    check_search(out)
    client = client_for(tracking)
    exp = client.get_experiment_by_name("tuneprune")
    runs = client.search_runs([exp.experiment_id], "tags.`tuneprune.kind` = 'trial'")
    assert len(runs) == 2
    assert all(r.info.status == "FINISHED" for r in runs)
    nodes = {r.data.tags["ray.node_id"] for r in runs}
    assert nodes == ray_cluster["nodes"]  # the two trials ran at once, one per 1-CPU node


def test_search_on_postgres_and_mlflow_server(ray_cluster, mlflow_server, postgres, pg_env, tmp_path):
    import optuna

    space = write_space(tmp_path, "onpg", num_samples=1, grid={"sparsity.target": [0.5, 0.9]})
    env = {**pg_env, "RAY_ADDRESS": ray_cluster["address"]}  # --address auto, as on a cluster node
    out = subprocess.run(
        search_cmd(space, "--address", "auto", "--tracking-uri", mlflow_server["uri"],
                   "--storage", postgres["optuna"], "--results-dir", tmp_path / "runs"),
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=SEARCH_TIMEOUT_S,
    )  # fmt: skip
    check_search(out)

    os.environ["PGPASSFILE"] = postgres["pgpassfile"]  # for this process's own reads
    try:
        client = client_for(mlflow_server["uri"])
        parent = client.search_runs(
            [client.get_experiment_by_name("tuneprune").experiment_id],
            "tags.`tuneprune.name` = 'onpg' and tags.`tuneprune.kind` = 'search'",
        )
        assert len(parent) == 1
        assert parent[0].info.status == "FINISHED"
        assert parent[0].data.params["storage"] == postgres["optuna"]
        seen = set()
        for target in (0.5, 0.9):
            study = optuna.load_study(study_name=f"onpg[sparsity.target={target}]", storage=postgres["optuna"])
            assert len(study.trials) == 1
            for trial in study.trials:
                assert trial.state.name == "COMPLETE"
                run = client.get_run(trial.user_attrs["mlflow_run_id"])
                seen.add(run.info.run_id)
                assert run.info.status == "FINISHED"
                assert run.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
                assert run.data.params["sparsity.target"] == str(target)
                assert float(run.data.params["lr"]) == pytest.approx(trial.params["lr"])
                assert run.data.metrics["val_acc"] == pytest.approx(trial.value)
                assert run.data.tags["ray.node_id"] in ray_cluster["nodes"]
                # Served artifacts: uploaded through the server into its artifacts destination.
                assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
                assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"config.json", "model.pt"}
                stored = list(mlflow_server["artifacts"].rglob(f"{run.info.run_id}/artifacts/model.pt"))
                assert len(stored) == 1
                assert stored[0].stat().st_size > 0
        children = client.search_runs(
            [parent[0].info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}'"
        )
        assert {r.info.run_id for r in children} == seen
    finally:
        os.environ.pop("PGPASSFILE", None)


# Both drivers wait at ensure_ray (after opening the studies, before asking for the first
# trial) until both got there: "started at once", exactly. A driver that opens the study while
# another driver's trials are already RUNNING cannot tell them from a dead driver's and
# re-runs them (no per-trial heartbeats yet; README.md, "Several drivers, one study").
BARRIER_DRIVER = """
import sys, time
from pathlib import Path
import tuneprune.search.runner as runner
barrier, me, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
join = runner.ensure_ray
def ensure_ray(address):
    (barrier / me).touch()
    deadline = time.time() + 240
    while len(list(barrier.iterdir())) < count and time.time() < deadline:
        time.sleep(0.1)
    return join(address)
runner.ensure_ray = ensure_ray
from tuneprune.cli import main
sys.exit(main(sys.argv[4:]))
"""


RACERS = """
import json, multiprocessing, sys
count, args = int(sys.argv[1]), sys.argv[2:]
context = multiprocessing.get_context("fork")
barrier = context.Barrier(count)
{body}
racers = [context.Process(target=race, args=(me,), daemon=True) for me in range(count)]
for racer in racers:
    racer.start()
for racer in racers:
    racer.join(timeout=120)
print(json.dumps([racer.exitcode for racer in racers]))
"""


def run_racers(body: str, count: int, *args, **run_kwargs) -> None:
    """One process runs ``body`` once (imports, setup; ``args`` as strings in its ``args``), then forks ``count``
    racers, each running ``race(me)`` of ``body``, released together by one ``barrier``; asserts each exited 0."""
    script = RACERS.format(body=body)
    out = subprocess.run([sys.executable, "-c", script, str(count), *map(str, args)],
                         capture_output=True, text=True, timeout=300, **run_kwargs)  # fmt: skip
    assert out.returncode == 0, f"racers: {out.stdout}\n{out.stderr[-4000:]}"
    assert out.stdout.strip() == json.dumps([0] * count), f"racers: {out.stdout}\n{out.stderr[-4000:]}"


# Each racer opens the studies of one search the way a driver does (open_studies).
SCHEMA_RACE = """
from tuneprune.search.space import load_space
from tuneprune.search.studies import open_studies
url, doc = args[0], json.loads(args[1])
space = load_space(doc)
def race(me):
    barrier.wait(timeout=60)
    sys.exit(0 if len(open_studies(space, doc["name"], url)) == 1 else 3)
"""


def test_drivers_create_the_schema_of_a_new_database_once(postgres):
    """Four drivers opening one search on a fresh PostgreSQL database at the same moment:
    Optuna's tables and its alembic revision are created once, and every driver gets the study."""
    import optuna
    import sqlalchemy

    racers = 4
    database = f"race_{secrets.token_hex(4)}"
    run_script(SCRIPTS / "postgres.sh", "createdb", "--dir", postgres["dir"], database)
    url = postgres["optuna"].rsplit("/", 1)[0] + f"/{database}"
    doc = {"name": "raced", "base": BASE, "params": {"lr": {"type": "float", "low": 0.01, "high": 0.3}}}
    env = {**os.environ, "PGPASSFILE": postgres["pgpassfile"]}
    run_racers(SCHEMA_RACE, racers, url, json.dumps(doc), env=env)

    os.environ["PGPASSFILE"] = postgres["pgpassfile"]
    try:
        assert optuna.get_all_study_names(url) == ["raced"]
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT count(*) FROM alembic_version")).scalar() == 1
            assert conn.execute(sqlalchemy.text("SELECT count(*) FROM version_info")).scalar() == 1
        engine.dispose()
    finally:
        os.environ.pop("PGPASSFILE", None)


# Each racer is a driver resuming one search whose four trials a dead driver left RUNNING (stale: heartbeats
# every second, stale after 3 s): it opens the studies, claiming orphans, then hands trials out until the budget.
ORPHAN_RACE = """
from pathlib import Path
from tuneprune.search import studies
from tuneprune.search.searcher import trial_key
from tuneprune.search.space import load_space
url, doc, mode, out = args[0], json.loads(args[1]), args[2], Path(args[3])
studies.HEARTBEAT_INTERVAL_S, studies.GRACE_PERIOD_S = 1, 3
space = load_space(doc)
distributions = studies.distributions(space)
def race(me):
    barrier.wait(timeout=60)
    (gs,) = studies.open_studies(space, doc["name"], url, shared=mode == "shared")
    barrier.wait(timeout=60)  # lone drivers claim as they open: all claimed, all ask at once
    handed_out = []
    while gs.remaining:
        trial = gs.ask(distributions)
        key = trial_key(gs.index, trial)
        gs.set_user_attrs(trial.number, {"key": key, "name": key})
        handed_out.append(key)
    gs.heartbeats.close()
    (out / f"{me}.json").write_text(json.dumps(handed_out))
"""


@pytest.mark.parametrize("mode", ["lone", "shared"])
def test_drivers_resuming_at_once_run_each_orphan_once(postgres, mode, tmp_path, monkeypatch):
    """Four drivers resume one search at the same moment (``--resume``: each claims every RUNNING trial;
    ``--join``: the stale ones): each orphan is claimed by one (its RUNNING -> FAIL is row-locked), queued
    again, and handed out once, under its key, with its MLflow run and checkpoint epoch."""
    import optuna

    from tuneprune.search import studies
    from tuneprune.search.space import load_space

    racers, orphans = 4, 4
    database = f"orphans_{mode}_{secrets.token_hex(4)}"
    run_script(SCRIPTS / "postgres.sh", "createdb", "--dir", postgres["dir"], database)
    url = postgres["optuna"].rsplit("/", 1)[0] + f"/{database}"
    doc = {"name": "resumed", "base": BASE, "params": {"lr": {"type": "float", "low": 0.01, "high": 0.3}},
           "num_samples": orphans}  # fmt: skip
    monkeypatch.setenv("PGPASSFILE", postgres["pgpassfile"])
    monkeypatch.setattr(studies, "HEARTBEAT_INTERVAL_S", 1)
    space = load_space(doc)
    (dead,) = studies.open_studies(space, "resumed", url)  # the driver that dies with four trials running
    for i in range(orphans):
        number = dead.ask(studies.distributions(space)).number
        attrs = {"key": f"g0-{number:03d}", "mlflow_run_id": f"run-{i}", studies.CHECKPOINT_EPOCH: i, "name": "x"}
        dead.set_user_attrs(number, attrs)
    assert dead.heartbeats is not None
    dead.heartbeats.close()
    time.sleep(4)  # stale (3 s)
    run_racers(ORPHAN_RACE, racers, url, json.dumps(doc), mode, tmp_path)

    handed_out = [key for me in range(racers) for key in json.loads((tmp_path / f"{me}.json").read_text())]
    keys = [f"g0-{number:03d}" for number in range(orphans)]
    assert sorted(k for k in handed_out if k in keys) == keys  # each orphan run once
    trials = optuna.load_study(study_name="resumed", storage=url).get_trials()
    continuing = [t for t in trials if studies.CONTINUES in t.user_attrs]
    assert sorted(t.user_attrs[studies.CONTINUES] for t in continuing) == list(range(orphans))  # each claimed once
    assert all(t.state == optuna.trial.TrialState.RUNNING for t in continuing)  # and handed out
    for t in continuing:
        i = t.user_attrs[studies.CONTINUES]
        assert t.user_attrs["mlflow_run_id"] == f"run-{i}"
        assert t.user_attrs[studies.CHECKPOINT_EPOCH] == i
        assert t.params == trials[i].params
    assert [t.state for t in trials[:orphans]] == [optuna.trial.TrialState.FAIL] * orphans
    if mode == "shared":  # the budget counts each claimed orphan once: no new trial, unless two asked the last
        assert len(trials) - 2 * orphans <= racers - 1


# Each racer is a driver joining one search whose grid gained points (--join): it opens the studies and writes the
# grid index each got.
GRID_RACE = """
from pathlib import Path
from tuneprune.search.space import load_space
from tuneprune.search.studies import open_studies
url, doc, out = args[0], json.loads(args[1]), Path(args[2])
space = load_space(doc)
def race(me):
    barrier.wait(timeout=60)
    indices = [gs.index for gs in open_studies(space, doc["name"], url, shared=True)]
    (out / f"{me}.json").write_text(json.dumps(indices))
"""


def test_drivers_joining_at_once_give_a_new_grid_point_one_index(postgres, tmp_path, monkeypatch):
    """Four drivers join a search at the same moment with a grid that gained points, one before a point of the search
    and two at the end: all give each new point one index (its trials' keys, MLflow runs and folders are theirs
    together), the next ones of the search, and each old point keeps its own."""
    import optuna

    from tuneprune.search.space import load_space
    from tuneprune.search.studies import GRID_INDEX, open_studies, study_name

    racers = 4
    database = f"grid_{secrets.token_hex(4)}"
    run_script(SCRIPTS / "postgres.sh", "createdb", "--dir", postgres["dir"], database)
    url = postgres["optuna"].rsplit("/", 1)[0] + f"/{database}"
    doc = {"name": "grown", "base": BASE, "params": {"lr": {"type": "float", "low": 0.01, "high": 0.3}}}
    monkeypatch.setenv("PGPASSFILE", postgres["pgpassfile"])
    open_studies(load_space({**doc, "grid": {"seed": [0, 1]}}), "grown", url)  # the search as it ran
    grown = {**doc, "grid": {"seed": [0, 5, 1, 6, 7]}}
    run_racers(GRID_RACE, racers, url, json.dumps(grown), tmp_path)

    assert [json.loads((tmp_path / f"{me}.json").read_text()) for me in range(racers)] == [[0, 2, 1, 3, 4]] * racers
    recorded = {
        seed: optuna.load_study(study_name=study_name("grown", {"seed": seed}), storage=url).user_attrs[GRID_INDEX]
        for seed in (0, 5, 1, 6, 7)
    }
    assert recorded == {0: 0, 5: 2, 1: 1, 6: 3, 7: 4}


def test_drivers_logging_one_runs_params_at_once_all_succeed(mlflow_server):
    """Drivers that join one search log the same params on its parent run at the same moment: the
    server checks and inserts in two steps, so one of two writers of a param is refused (a
    unique-key violation); every driver still returns, and the run holds each param once."""
    import threading

    from tuneprune.tracking.runs import RunTracker

    writers, rounds = 4, 5
    params = {f"p{i}": i for i in range(12)}
    trackers = [RunTracker(mlflow_server["uri"], "params_race") for _ in range(writers)]
    errors: list[BaseException] = []

    def write(tracker: RunTracker, run_id: str, barrier: threading.Barrier) -> None:
        barrier.wait(timeout=60)
        try:
            tracker.log_params(run_id, params)
        except BaseException as err:  # the assertion below shows it
            errors.append(err)

    for _ in range(rounds):
        run_id = trackers[0].client.create_run(trackers[0].experiment_id).info.run_id
        barrier = threading.Barrier(writers)
        threads = [threading.Thread(target=write, args=(t, run_id, barrier)) for t in trackers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors[0]
        assert trackers[0].client.get_run(run_id).data.params == {k: str(v) for k, v in params.items()}


# Drivers of different searches on one machine record their results in one index at the same moment.
INDEX_RACE = """
from pathlib import Path
from tuneprune.tracking.index import index_results
rounds = int(args[0])
def race(me):
    for r in range(rounds):
        barrier.wait(timeout=60)
        index_results(f"search-{me}-{r}", "search", Path("runs"), "http://mlflow", f"run-{me}-{r}")
"""


def test_searches_indexing_at_once_all_keep_their_entry(tmp_path):
    """Searches started at the same moment on one machine each record their entry in the one index
    (``~/.tuneprune/index.json``): none is lost to another's read-modify-write."""
    from tuneprune.tracking.index import INDEX_ENV

    racers, rounds = 4, 20
    env = {**os.environ, INDEX_ENV: str(tmp_path / "index.json")}
    run_racers(INDEX_RACE, racers, rounds, env=env, cwd=tmp_path)
    entries = json.loads((tmp_path / "index.json").read_text())
    missing = {f"search-{me}-{r}" for me in range(racers) for r in range(rounds)} - entries.keys()
    assert not missing, f"{len(missing)} of {racers * rounds} entries lost: {sorted(missing)[:8]}"


# The early-stopping rules of drivers that share one results directory (--join, a shared filesystem):
# each driver's rule records its trials' rungs in the same early_stop.json, all at the same moment.
RUNG_RACE = """
from tuneprune.search.early_stop import AshaRule
rounds, path = int(args[0]), args[1]
def race(me):
    rule = AshaRule(1, 2, 8, ["max"], path)
    for r in range(rounds):
        barrier.wait(timeout=20)
        rule.should_stop("g0", f"g0-{me}{r:03d}", 1, [0.5])
"""


def test_drivers_recording_rungs_in_one_results_dir_at_once_all_succeed(tmp_path):
    """Joined drivers with one results directory each run an early-stopping rule that writes the same
    early_stop.json; rules recording at the same moment all succeed (a failed record fails the trial
    that asked), and the file is whole and keeps every driver's records."""
    racers, rounds = 4, 50
    path = tmp_path / "early_stop.json"
    run_racers(RUNG_RACE, racers, rounds, path)
    record = json.loads(path.read_text())
    assert record["directions"] == ["max"]
    missing = {f"g0-{me}{r:03d}" for me in range(racers) for r in range(rounds)} - record["tables"]["g0"]["1"].keys()
    assert not missing, f"{len(missing)} of {racers * rounds} records lost: {sorted(missing)[:8]}"


# The drivers of one search end together (the study's budget is theirs) and, with one --results-dir on the shared
# filesystem, each writes summary.json and the best-config files there and logs them to the one parent run.
OUTPUTS_RACE = """
import json
from pathlib import Path
from tuneprune.search.runner import SearchSummary, _write_outputs
from tuneprune.tracking import RunTracker
rounds, out, stores = int(args[0]), Path(args[1]), Path(args[2])
best = [{"key": f"g0-00{i}", "values": {"val_acc": 0.9}, "config": {"lr": 0.1 * i}} for i in range(3)]
def race(me):
    tracker = RunTracker(f"sqlite:///{stores / f'mlruns-{me}.db'}")  # a store each: the race is in the directory
    parent = tracker.start_parent("outputs", "search", resume=False)
    summary = SearchSummary("outputs", parent, "", "", out, {"val_acc": "max"}, [], best)
    barrier.wait(timeout=60)
    for r in range(rounds):
        _write_outputs(summary, tracker)
        assert json.loads((out / "summary.json").read_text())["name"] == "outputs"
"""


def test_drivers_ending_at_once_in_one_results_dir_all_write_their_outputs(tmp_path):
    """Joined drivers sharing a results directory write summary.json and the best-config files at the same moment:
    none fails (a best file another driver deleted first, or a summary read half-written), and the files are whole."""
    out, stores = tmp_path / "runs", tmp_path / "stores"
    out.mkdir()
    stores.mkdir()
    run_racers(OUTPUTS_RACE, 4, 20, out, stores)
    assert sorted(p.name for p in out.glob("best*.yaml")) == [f"best-0{i}-g0-00{i}.yaml" for i in range(3)]


def test_two_searches_at_once_share_one_study(ray_cluster, mlflow_server, postgres, pg_env, tmp_path):
    import optuna

    budget = 5
    space = write_space(tmp_path, "shared", num_samples=budget)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    drivers = []
    for me in ("a", "b"):
        args = ["search", str(space), "--no-progress", "--join", "--address", ray_cluster["address"],
                "--tracking-uri", mlflow_server["uri"], "--storage", postgres["optuna"],
                "--results-dir", tmp_path / f"runs-{me}"]  # fmt: skip
        drivers.append(
            subprocess.Popen(
                [sys.executable, "-c", BARRIER_DRIVER, str(barrier), me, "2", *map(str, args)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=pg_env,
                cwd=tmp_path,
            )
        )
    try:
        deadline = time.time() + SEARCH_TIMEOUT_S
        results = []
        for proc in drivers:
            stdout, stderr = proc.communicate(timeout=max(deadline - time.time(), 1))
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    finally:
        for proc in drivers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for out in results:
        check_search(out)

    os.environ["PGPASSFILE"] = postgres["pgpassfile"]
    try:
        study = optuna.load_study(study_name="shared", storage=postgres["optuna"])
    finally:
        os.environ.pop("PGPASSFILE", None)
    trials = study.trials
    # The budget is the study's, shared: the drivers stop together at `budget` trials (two
    # drivers asking in the same instant for the last one can each get one: one extra at most).
    assert budget <= len(trials) <= budget + 1
    assert [t.number for t in trials] == list(range(len(trials)))
    assert all(t.state.name == "COMPLETE" for t in trials)
    keys = {f"g0-{t.number:03d}" for t in trials}

    # Each driver ran only the trials it asked for (its own results dir), and both ran some.
    ran = [{p.name for p in (tmp_path / f"runs-{me}" / "shared" / "trials").iterdir()} for me in ("a", "b")]
    assert ran[0]
    assert ran[1]
    assert not ran[0] & ran[1]
    assert ran[0] | ran[1] == keys

    # One parent run, one child run per trial, none lost, none twice.
    client = client_for(mlflow_server["uri"])
    exp = client.get_experiment_by_name("tuneprune")
    parents = client.search_runs(
        [exp.experiment_id], "tags.`tuneprune.name` = 'shared' and tags.`tuneprune.kind` = 'search'"
    )
    assert len(parents) == 1
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    assert sorted(r.data.tags["tuneprune.trial"] for r in children) == sorted(keys)
    assert {r.info.run_id for r in children} == {t.user_attrs["mlflow_run_id"] for t in trials}
    assert all(r.info.status == "FINISHED" for r in children)


def assert_each_trial_kept(client, name: str, trials: list, epochs: int, keys=("val_acc",)) -> None:
    """The search ``name``'s parent run FINISHED, one FINISHED child run per Optuna trial (``trials``), and
    each of the ``keys`` metric histories with steps 1..``epochs`` exactly once."""
    experiment = client.get_experiment_by_name("tuneprune")
    assert experiment is not None
    parents = client.search_runs(
        [experiment.experiment_id], f"tags.`tuneprune.name` = '{name}' and tags.`tuneprune.kind` = 'search'"
    )
    assert [p.info.status for p in parents] == ["FINISHED"]
    runs = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    assert sorted(r.data.tags["tuneprune.trial"] for r in runs) == sorted(t.user_attrs["key"] for t in trials)
    assert {r.info.run_id for r in runs} == {t.user_attrs["mlflow_run_id"] for t in trials}
    assert all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        for key in keys:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == list(range(1, epochs + 1)), (run.data.tags["tuneprune.trial"], key, steps)


def test_a_restarted_mlflow_server_costs_no_metric(ray_cluster, mlflow_server, postgres, pg_env, tmp_path):
    """The tracking server killed (SIGKILL, its whole process group) while trials log to it, and
    started again on its port: the trials keep training and retry their writes; every trial ends
    once, FINISHED, with each epoch's metrics once."""
    import optuna

    epochs, budget = 5, 3
    space = write_space(tmp_path, "mlrestart", num_samples=budget, base={**BASE, "epochs": epochs})
    client = client_for(mlflow_server["uri"])
    driver = subprocess.Popen(
        search_cmd(space, "--address", ray_cluster["address"], "--tracking-uri", mlflow_server["uri"],
                   "--storage", postgres["optuna"], "--results-dir", tmp_path / "runs"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=pg_env, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.time() + SEARCH_TIMEOUT_S
        while True:  # until a trial of this search (the store holds other tests' searches) has logged an epoch
            assert driver.poll() is None, driver.communicate()
            assert time.time() < deadline, "no trial logged an epoch"
            experiment = client.get_experiment_by_name("tuneprune")
            ids = [experiment.experiment_id] if experiment is not None else []
            parent = ids and client.search_runs(ids, "tags.`tuneprune.name` = 'mlrestart'")
            if parent and client.search_runs(
                ids, f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}' and metrics.val_acc > -1"
            ):
                break
            time.sleep(0.2)
        leader = int((mlflow_server["dir"] / "mlflow.pid").read_text())
        os.killpg(leader, signal.SIGKILL)
        time.sleep(2)  # the trials log into a dead server for a while
        wait_until_dead(leader)  # as an operator would see it stopped before starting it again
        mlflow_server["start"]()
        stdout, stderr = driver.communicate(timeout=max(deadline - time.time(), 1))
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    check_search(subprocess.CompletedProcess(driver.args, driver.returncode, stdout, stderr))

    os.environ["PGPASSFILE"] = postgres["pgpassfile"]
    try:
        study = optuna.load_study(study_name="mlrestart", storage=postgres["optuna"])
    finally:
        os.environ.pop("PGPASSFILE", None)
    assert [t.number for t in study.trials] == list(range(budget))
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert_each_trial_kept(client, "mlrestart", study.trials, epochs, ("val_acc", "train_loss", "epoch_time"))


def test_a_restarted_postgres_costs_no_trial(ray_cluster, mlflow_server, postgres, pg_env, tmp_path):
    """PostgreSQL (the Optuna storage and the tracking server's store) restarted while a search asks and
    tells: the driver reconnects; every trial is asked once and told once, COMPLETE, and its run
    FINISHED with each epoch once."""
    import optuna

    from tuneprune.search.studies import claimed

    epochs, budget = 3, 4
    space = write_space(tmp_path, "pgrestart", num_samples=budget, base={**BASE, "epochs": epochs})
    driver = subprocess.Popen(
        search_cmd(space, "--address", ray_cluster["address"], "--tracking-uri", mlflow_server["uri"],
                   "--storage", postgres["optuna"], "--results-dir", tmp_path / "runs"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=pg_env, cwd=tmp_path,
    )  # fmt: skip
    os.environ["PGPASSFILE"] = postgres["pgpassfile"]
    try:
        deadline = time.time() + SEARCH_TIMEOUT_S
        while True:  # until the search has told its first trial, with more to ask
            assert driver.poll() is None, driver.communicate()
            assert time.time() < deadline, "no trial ended"
            try:
                told = optuna.load_study(study_name="pgrestart", storage=postgres["optuna"]).get_trials(
                    deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)
                )
            except KeyError:  # no such study yet
                told = []
            if told:
                break
            time.sleep(0.2)
        postgres["restart"]()
        stdout, stderr = driver.communicate(timeout=max(deadline - time.time(), 1))
        check_search(subprocess.CompletedProcess(driver.args, driver.returncode, stdout, stderr))
        study = optuna.load_study(study_name="pgrestart", storage=postgres["optuna"])
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        os.environ.pop("PGPASSFILE", None)
    # an ask cut short leaves a trial without a name: claimed (FAIL) and queued again, never run
    superseded = claimed(study.trials)
    assert all(study.trials[n].state.name == "FAIL" and "name" not in study.trials[n].user_attrs for n in superseded)
    trials = [t for t in study.trials if t.number not in superseded]
    assert len(trials) == budget  # none asked twice, none left RUNNING
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert_each_trial_kept(client_for(mlflow_server["uri"]), "pgrestart", trials, epochs)


def _trials_on_node(db: Path, node: str) -> dict[str, int]:
    """The trial runs of the MLflow store ``db`` started on Ray node ``node``: run id -> epochs logged."""
    import sqlite3

    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
            rows = con.execute(
                "SELECT t.run_uuid, (SELECT COUNT(*) FROM metrics m WHERE m.run_uuid = t.run_uuid AND m.key = 'val_acc') "
                "FROM tags t WHERE t.key = 'ray.node_id' AND t.value = ?",
                (node,),
            ).fetchall()
    except sqlite3.OperationalError as err:  # the driver is still creating the store's tables
        if "no such table" in str(err):
            return {}
        raise
    return dict(rows)


def test_a_killed_worker_node_costs_no_trial(ray_cluster, tmp_path):
    """A worker node (its raylet and trial workers) killed with SIGKILL in the middle of a search: its
    trial restarts on the head from its last checkpoint; every trial ends once, FINISHED, each epoch
    logged once (formulas §10.8). One trial per node: the worker's trial can only go on on the head."""
    import optuna
    from mlflow.tracking import MlflowClient

    epochs, budget = 10, 2
    victim = (ray_cluster["worker"] / "node_id").read_text().strip()
    space = write_space(tmp_path, "nodekill", num_samples=budget, base={**BASE, "epochs": epochs}, max_failures=3)
    db = tmp_path / "mlruns.db"
    driver = subprocess.Popen(
        search_cmd(space, "--address", ray_cluster["address"], "--tracking-uri", f"sqlite:///{db}",
                   "--storage", f"sqlite:///{tmp_path}/optuna.db", "--results-dir", tmp_path / "runs"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ray_cluster["env"], cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.time() + SEARCH_TIMEOUT_S
        # Kill the node once a trial there has logged an epoch or two (its checkpoint is written first),
        # with most of its epochs left to train.
        while not any(0 < n <= 2 for n in _trials_on_node(db, victim).values()):
            assert driver.poll() is None, driver.communicate()
            assert time.time() < deadline, "no trial reached an epoch on the worker node"
            time.sleep(0.2)
        assert ray_cluster["kill_worker"]() == victim
        stdout, stderr = driver.communicate(timeout=max(deadline - time.time(), 1))
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    check_search(subprocess.CompletedProcess(driver.args, driver.returncode, stdout, stderr))

    study = optuna.load_study(study_name="nodekill", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.number for t in study.trials] == list(range(budget))  # none asked twice
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("tuneprune")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.`tuneprune.kind` = 'trial'")
    assert sorted(r.data.tags["tuneprune.trial"] for r in runs) == [f"g0-{i:03d}" for i in range(budget)]
    assert all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, epochs + 1)), (run.data.tags["tuneprune.trial"], steps)
    moved = [r for r in runs if "resumed_from_epoch" in r.data.tags]
    assert moved, "no trial was restarted after the node died"
    assert all(r.data.tags["ray.node_id"] != victim for r in moved)  # re-tagged on the node it resumed on
    assert all(int(r.data.tags["resumed_from_epoch"]) >= 1 for r in moved)


@pytest.mark.parametrize("name", ["launcher-onprem.yaml", "launcher-aws-gpu.yaml"])
def test_launcher_configs_pass_rays_schema(name):
    """The example cluster-launcher files are what `ray up` accepts (defaults filled, schema checked)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load((SCRIPTS / "cluster" / name).read_text()))
    validate_config(config)
    commands = " ".join(config["setup_commands"] + config["worker_start_ray_commands"])
    assert "setup_venv.sh" in commands
    assert "RAY_USAGE_STATS_ENABLED=0" in commands
