"""What a search costs beyond its training: harness efficiency and bookkeeping per trial.

    efficiency        = summed epoch time of the trials / (search wall time x slots)
    overhead/trial    = (search wall time x slots - summed epoch time) / trials   (slot-seconds)

Without ``--trials`` it runs ``search_spaces/digits_demo.yaml`` (or ``--space``, with
``--set`` overrides). With ``--trials N [N ...]`` it runs, for each N, a search of N
one-epoch trials of ``small_cnn`` on digits at one grid point (the space's sampler, no early
stopping), the bookkeeping-bound case where the harness's cost per trial shows. Each search
gets fresh SQLite stores (MLflow and Optuna) and a fresh results directory; all of them share
one local Ray, whose start and teardown are timed apart and charged to no search.

With ``--cluster`` the searches run on a loopback cluster started by the scripts users run
(as ``tests/system/test_cluster.py`` does): PostgreSQL (``scripts/postgres.sh``), an MLflow tracking
server on it (``scripts/mlflow-server.sh``, served artifacts) and a Ray head without CPUs
plus two worker nodes of ``--cpus / 2`` CPUs each (``scripts/cluster/ray-node.sh``); each
search gets its own Optuna database there, and all share the tracking server.

Besides the times it counts the calls a search makes: MLflow client calls (``MlflowClient``
methods, outermost call only) in the driver and in every Ray worker (counted there by a Ray
``worker_process_setup_hook``), and Optuna storage calls (``RDBStorage`` methods, outermost
only: what reaches the database past Optuna's cache) in the driver, and the driver's
resident memory when the search starts and when it ends.

    .venv/bin/python scripts/bench_search.py [--space PATH] [--set k=v ...]
    .venv/bin/python scripts/bench_search.py --trials 100 1000 [--cluster] [--json PATH]

``--json`` keeps the rows as the other benchmarks do (``bench_common.FigureFile``, table
``searches``; a row's device is where its trials trained).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_common import FigureFile, add_json_argument, load_average, positive_int

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
COUNTS_ENV = "TUNEPRUNE_BENCH_COUNTS"  # the directory where each process writes the calls it counted


def count_calls(cls: type, label: str, counts: Counter, on_count=None) -> None:
    """Wrap every public method of ``cls`` so that each outermost call adds 1 to ``counts[label]``."""
    depth = threading.local()

    def wrap(method):
        @functools.wraps(method)
        def counted(*args, **kwargs):
            level = getattr(depth, "level", 0)
            depth.level = level + 1
            try:
                return method(*args, **kwargs)
            finally:
                depth.level = level
                if level == 0:
                    counts[label] += 1
                    if on_count is not None:
                        on_count()

        return counted

    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and callable(member):
            setattr(cls, name, wrap(member))


def count_worker_calls() -> None:
    """Ray's ``worker_process_setup_hook``: count this worker's MLflow calls into ``$COUNTS_ENV/<pid>.json``."""
    from mlflow.tracking import MlflowClient

    counts: Counter = Counter()
    path = Path(os.environ[COUNTS_ENV]) / f"{os.getpid()}.json"

    def save() -> None:
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(counts))
        partial.replace(path)

    count_calls(MlflowClient, "mlflow", counts, save)


def worker_counts(directory: Path) -> Counter:
    total: Counter = Counter()
    for path in directory.glob("*.json"):
        total.update(json.loads(path.read_text()))
    return total


def resident_mib() -> float:
    """The resident memory of this process (``VmRSS`` of ``/proc/self/status``), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def trials_document(base: dict[str, Any], trials: int) -> dict[str, Any]:
    """``base`` made into ``trials`` one-epoch trials of small_cnn at one grid point, without early stopping."""
    document = copy.deepcopy(base)
    document["base"].update(model="small_cnn", epochs=1)
    document.update(grid={}, num_samples=trials, early_stopping={"type": "none"})
    return document


Stores = Callable[[Path, str], tuple[str, str]]  # (scratch directory, search name) -> (tracking URI, storage URL)


def sqlite_stores(tmp: Path, name: str) -> tuple[str, str]:
    return f"sqlite:///{tmp}/mlruns.db", f"sqlite:///{tmp}/optuna.db"


class LoopbackCluster:
    """PostgreSQL, an MLflow server on it and Ray (a head without CPUs, two worker nodes) on 127.0.0.1,
    started and stopped by the repository's scripts; :meth:`stores` gives each search its own Optuna database."""

    def __init__(self, base: Path, cpus: int) -> None:
        self.base, self.cpus = base, cpus
        # the nodes' and this driver's token: in the environment before Ray is imported, which reads it then
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
        self.env = {**os.environ, "PGPASSFILE": str(base / "pg" / "pgpass")}
        self.started: list[list[str]] = []  # the stop commands, in the order to run them

    def run(self, *args: Any) -> str:
        return subprocess.run([str(a) for a in args], env=self.env, check=True, capture_output=True, text=True).stdout

    def start(self) -> str:
        """Start everything; the Ray address."""
        ports = iter(range(21000 + secrets.randbelow(20) * 1000, 60000, 100))
        pg, pg_port = self.base / "pg", next(ports)
        self.run(SCRIPTS / "postgres.sh", "start", "--dir", pg, "--port", pg_port, "--fast")
        self.started.append([str(SCRIPTS / "postgres.sh"), "stop", "--dir", str(pg)])
        self.pg_url = f"postgresql://tuneprune@127.0.0.1:{pg_port}"
        mlflow_dir, mlflow_port = self.base / "mlflow", next(ports)
        self.run(SCRIPTS / "mlflow-server.sh", "start", "--backend-store-uri", f"{self.pg_url}/mlflow",
                 "--port", mlflow_port, "--dir", mlflow_dir, "--workers", 2, "--timeout", 180)  # fmt: skip
        self.started.insert(0, [str(SCRIPTS / "mlflow-server.sh"), "stop", "--dir", str(mlflow_dir)])
        self.tracking_uri = f"http://127.0.0.1:{mlflow_port}"
        node = SCRIPTS / "cluster" / "ray-node.sh"
        gcs = next(ports)
        self.run(node, "head", "--dir", self.base / "h", "--port", gcs, "--ports", next(ports), "--num-cpus", 0)
        self.started.insert(0, [str(node), "stop", "--dir", str(self.base / "h"), "--grace", "5"])
        for worker in ("w1", "w2"):
            self.run(node, "worker", "--dir", self.base / worker, "--address", f"127.0.0.1:{gcs}",
                     "--ports", next(ports), "--num-cpus", self.cpus // 2)  # fmt: skip
            self.started.insert(0, [str(node), "stop", "--dir", str(self.base / worker), "--grace", "5"])
        os.environ.update(self.env)  # this process is the searches' driver
        return f"127.0.0.1:{gcs}"

    def stores(self, tmp: Path, name: str) -> tuple[str, str]:
        database = name.replace("-", "_")
        self.run(SCRIPTS / "postgres.sh", "createdb", "--dir", self.base / "pg", database)
        return self.tracking_uri, f"{self.pg_url}/{database}"

    def stop(self) -> None:
        for command in self.started:
            subprocess.run(command, env=self.env, capture_output=True)


def measure(
    document: dict[str, Any], space_path: Path, cpus: int, driver_counts: Counter, name: str, stores: Stores
) -> dict[str, Any]:
    """Run the search ``document`` (as ``name``) on fresh ``stores``; its times, calls and driver memory."""
    from mlflow.tracking import MlflowClient

    from tuneprune.search import prepare_search, run_search

    with tempfile.TemporaryDirectory() as tmp:
        counts_dir = Path(os.environ[COUNTS_ENV])
        for path in counts_dir.glob("*.json"):
            path.unlink()
        tracking_uri, storage_url = stores(Path(tmp), name)
        prepared = prepare_search(
            space_path,
            name=name,
            tracking_uri=tracking_uri,
            storage_url=storage_url,
            results_root=Path(tmp) / "runs",
            document=document,
        )
        driver_counts.clear()
        rss_start = resident_mib()
        t0 = time.perf_counter()
        summary = run_search(prepared, progress=False)
        wall = time.perf_counter() - t0
        rss_end = resident_mib()
        calls = Counter(driver_counts) + worker_counts(counts_dir)

        client = MlflowClient(summary.tracking_uri)
        work = sum(
            m.value
            for t in summary.trials
            if t["mlflow_run_id"]
            for m in client.get_metric_history(t["mlflow_run_id"], "epoch_time")
        )
    space = prepared.space
    trials = len(summary.trials)
    slots = min(space.max_concurrent, int(cpus / space.resources.cpu))
    return {
        "device": "cuda" if space.resources.gpu > 0 else "cpu",  # Ray hides the GPUs from trials that ask for none
        "trials": trials,
        "wall_s": wall,
        "trial_time_s": work,
        "slots": slots,
        "efficiency": work / (wall * slots),
        "overhead_per_trial_slot_s": (wall * slots - work) / trials,
        "trials_per_minute": 60 * trials / wall,
        "driver_rss_start_mib": rss_start,
        "driver_rss_end_mib": rss_end,
        "mlflow_calls_per_trial": calls["mlflow"] / trials,
        "optuna_calls_per_trial": calls["optuna"] / trials,
    }


COLUMNS = (  # (title, key of a row)
    ("search", "search"), ("trials", "trials"), ("wall s", "wall_s"), ("trial time s", "trial_time_s"),
    ("slots", "slots"), ("efficiency", "efficiency"), ("overhead / trial, slot-s", "overhead_per_trial_slot_s"),
    ("trials / min", "trials_per_minute"), ("driver MiB, start", "driver_rss_start_mib"),
    ("driver MiB, end", "driver_rss_end_mib"), ("MLflow calls / trial", "mlflow_calls_per_trial"),
    ("Optuna calls / trial", "optuna_calls_per_trial"),
)  # fmt: skip


def cell(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces" / "digits_demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--trials", type=positive_int, nargs="+", metavar="N", help="searches of N one-epoch trials each"
    )
    parser.add_argument(
        "--cpus", type=positive_int, default=2, help="slots: the local Ray's CPUs, or the two worker nodes'"
    )
    parser.add_argument("--cluster", action="store_true", help="on a loopback cluster (PostgreSQL, MLflow server)")
    add_json_argument(parser)
    args = parser.parse_args()
    for var, value in (("RAY_USAGE_STATS_ENABLED", "0"), ("MLFLOW_DISABLE_TELEMETRY", "true"), ("DO_NOT_TRACK", "1")):
        os.environ.setdefault(var, value)
    from tuneprune.cluster.drivers import space_document
    from tuneprune.search.space import load_space
    from tuneprune.shared.config import ConfigError

    try:  # each search's space as it will load, before anything starts (a bad --space or --set was a traceback)
        base = space_document(args.space, args.overrides, None)
        searches = [(f"{n} trials", trials_document(base, n)) for n in args.trials or []] or [(args.space.stem, base)]
        for _, document in searches:
            load_space(document)
    except ConfigError as err:
        parser.error(str(err))

    nodes = Path(tempfile.mkdtemp(prefix="tpb-", dir="/tmp"))  # short: Ray's socket paths live below
    os.chmod(nodes, 0o711)  # PostgreSQL's own user (as root: `postgres`) traverses it to its directory
    cluster = LoopbackCluster(nodes, args.cpus) if args.cluster else None

    import optuna
    import ray
    from mlflow.tracking import MlflowClient

    driver_counts: Counter = Counter()
    count_calls(MlflowClient, "mlflow", driver_counts)
    count_calls(optuna.storages.RDBStorage, "optuna", driver_counts)
    load = load_average()
    figures = FigureFile(args.json, "search")
    rows = []
    with tempfile.TemporaryDirectory() as counts_dir:
        os.environ[COUNTS_ENV] = counts_dir
        stores: Stores = sqlite_stores
        try:
            t0 = time.perf_counter()
            if cluster is not None:
                address, stores = cluster.start(), cluster.stores
            ray.init(
                address=address if cluster is not None else None,
                num_cpus=None if cluster is not None else args.cpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
                runtime_env={"worker_process_setup_hook": count_worker_calls, "env_vars": {COUNTS_ENV: counts_dir}},
            )
            t_ray = time.perf_counter() - t0
            for i, (label, document) in enumerate(searches):
                row = measure(document, args.space, args.cpus, driver_counts, f"bench-{i}", stores)
                rows.append({"search": label + (", loopback cluster" if cluster else ""), **row})
                figures.add("searches", rows[-1])
            t0 = time.perf_counter()
            ray.shutdown()
            t_down = time.perf_counter() - t0
        except BaseException:
            if cluster is None:
                shutil.rmtree(nodes, ignore_errors=True)
            else:
                traceback.print_exc()  # now: stopping the cluster below makes Ray end this process before Python would
                print(f"the cluster's logs are kept in {nodes}", file=sys.stderr, flush=True)
            raise
        else:
            shutil.rmtree(nodes, ignore_errors=True)
        finally:
            if cluster is not None:
                cluster.stop()

    where = (
        "a loopback cluster (PostgreSQL, MLflow server, 2 Ray worker nodes)" if args.cluster else "local Ray, SQLite"
    )
    print(
        f"search bookkeeping ({args.space.name}, {args.cpus} CPUs, {where}, load average {load} at the start; "
        f"{'cluster and ' if args.cluster else ''}Ray start {t_ray:.1f} s and teardown {t_down:.1f} s not charged)\n"
    )
    print("| " + " | ".join(title for title, _ in COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(cell(row[key]) for _, key in COLUMNS) + " |")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        ratio = last["overhead_per_trial_slot_s"] / first["overhead_per_trial_slot_s"]
        print(f"\noverhead per trial at {last['trials']} trials / at {first['trials']} trials: {ratio:.2f}")


if __name__ == "__main__":
    main()
