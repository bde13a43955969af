"""The benchmark scripts run as the README shows them, on the smallest settings, and print their tables;
scripts/gpu_check.sh runs its whole pipeline on the CPU (--cpu-smoke) and assembles its table."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# tuneprune's dependencies that the GPU machine lacks (docs/performance.md, "GPU figures"): gpu_check.sh must not need them
ABSENT_ON_THE_GPU_MACHINE = ("ray", "optuna", "optuna_dashboard", "mlflow", "pymoo", "zennit", "psycopg")
BLOCKER = f"""import importlib.abc, sys


class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT_ON_THE_GPU_MACHINE!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (absent on the GPU machine)")


sys.meta_path.insert(0, Absent())
"""


def test_bench_pack_prints_throughput_and_launch_tables():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_pack.py"), "--device", "cpu", "--models", "resnet20",
         "--packs", "1,2", "--steps", "2", "--batch-size", "8", "--repeats", "1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    rows = re.findall(r"^\| resnet20 \| (\d+) \|(.*)\|$", out.stdout, re.MULTILINE)
    throughput = [r for r in rows if len(r[1].split("|")) == 7]
    launches = [r for r in rows if len(r[1].split("|")) == 5]
    assert [k for k, _ in throughput] == ["1", "2"], out.stdout
    assert [k for k, _ in launches] == ["1", "2"], out.stdout
    for _, cells in throughput:
        assert all(float(c) > 0 for c in cells.split("|"))
    fused = [int(cells.split("|")[0]) for _, cells in launches]
    solo_twice = int(launches[1][1].split("|")[3])
    assert fused[1] < solo_twice  # two packed members issue fewer launches than two solo steps


@pytest.mark.parametrize(
    ("script", "argument", "value"),
    [
        ("bench_pack", "--packs", "2,x"), ("bench_pack", "--packs", "0"), ("bench_pack", "--steps", "-1"),
        ("bench_pack", "--steps", "0"), ("bench_pack", "--repeats", "0"), ("bench_pack", "--models", "nope"),
        ("bench_sparse", "--models", "resnet20,nope"), ("bench_sparse", "--steps", "-1"),
        ("bench_sparse", "--batch-size", "0"), ("bench_sparse", "--threads", "0"),
        ("bench_train", "--models", "nope"), ("bench_train", "--images", "0"), ("bench_train", "--epochs", "x"),
        ("bench_search", "--trials", "0"), ("bench_search", "--cpus", "0"),
        ("bench_trainable", "--matmuls", "0"), ("bench_trainable", "--repeats", "-1"),
        ("bench_early_stop", "--seeds", "0,x"), ("bench_early_stop", "--epochs", "0"),
        ("bench_sparse", "--devices", "nope"), ("bench_train", "--devices", "cpu,nope"),
    ],
)  # fmt: skip
def test_benchmarks_refuse_a_bad_count_or_model_before_they_measure(script, argument, value):
    """A count that is not a whole number (>= 1, or >= 0 where 0 means none) or a model not in the registry:
    argparse's one line naming the option (and for a model, the allowed names), exit 2, before any work
    (``--models nope``, ``--packs 2,x`` and ``--steps -1`` ended in tracebacks, ``--steps 0`` ran the default count
    silently, counts of 0 started a benchmark)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"{script}.py"), argument, value],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"argument {argument}: " in out.stderr.strip().splitlines()[-1]
    if argument == "--models":
        assert "unknown model 'nope', allowed: densenet40_24, " in out.stderr.strip().splitlines()[-1]
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("script", "arguments", "error"),
    [
        ("bench_early_stop", ["--reduction-factor", "1"],
         "early_stopping.reduction_factor = 1.0: Input should be greater than 1"),
        ("bench_search", ["--set", "base.epochs=0"], "base.epochs = 0: Input should be greater than or equal to 1"),
        ("bench_search", ["--space", "absent.yaml"], "absent.yaml: file not found"),
        ("bench_sparse", ["--sparse-config", "{threshold: median}"], "threshold = 'median': Input should be 'global' or 'layer'"),
        ("bench_sparse", ["--sparse-config", "layer"],
         "--sparse-config = 'layer': a YAML mapping is required, e.g. '{threshold: layer}'"),
    ],
)  # fmt: skip
def test_benchmarks_refuse_a_setting_the_run_would_refuse_before_they_start(script, arguments, error, tmp_path):
    """A space or sparsity setting the search or the Sparsifier refuses: one line naming the field, exit 2, before
    anything runs (``bench_early_stop.py`` started Ray and ``bench_sparse.py`` built its first model, then each ended
    in a traceback; ``bench_search.py`` also left its temporary folder in /tmp)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"{script}.py"), *arguments],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == f"{script}.py: error: {error}"
    assert out.stdout == ""  # nothing measured


@pytest.mark.ray  # the script starts its own local Ray
def test_bench_search_counts_each_trials_bookkeeping_in_the_driver_and_the_workers(tmp_path):
    figures = tmp_path / "search.json"
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_search.py"), "--trials", "1", "2", "--json", str(figures)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    record = json.loads(figures.read_text())
    assert record["bench"] == "search"
    assert list(record["devices"]) == ["cpu"]
    rows = record["tables"]["searches"]
    assert [(r["search"], r["trials"]) for r in rows] == [("1 trials", 1), ("2 trials", 2)]
    for r in rows:
        assert 0 < r["efficiency"] < 1
        assert r["overhead_per_trial_slot_s"] > 0
        # a trial's run, at least: created, params, config.json, its epoch's metrics, ended (workers);
        # Optuna: at least an ask and a tell per trial (the driver)
        assert r["mlflow_calls_per_trial"] >= 5
        assert r["optuna_calls_per_trial"] >= 2
        assert r["driver_rss_end_mib"] > 0
        assert r["driver_rss_start_mib"] > 0
    assert "overhead per trial at 2 trials / at 1 trials" in out.stdout


def _table(text: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the first Markdown table in ``text``."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != len(header):
            break
        rows.append(cells)
    return header, rows


@pytest.mark.slow
def test_gpu_check_cpu_smoke_assembles_one_table_of_ratios_without_the_libraries_the_gpu_machine_lacks(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(site)}
    blocked = subprocess.run([sys.executable, "-c", "import ray"], env=env, capture_output=True, text=True)
    assert "absent on the GPU machine" in blocked.stderr  # the blocker works
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--cpu-smoke", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=1500, cwd=ROOT, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    text = (tmp_path / "out" / "table.md").read_text()
    assert out.stdout.endswith(text)
    assert re.match(r"\*\*GPU figures\*\* \(cpu\): CPU .+, torch \d", text), text
    header, rows = _table(text)
    assert header == [
        "model", "dense step ms", "sparse/dense step", "train dense/plain", "train sparse/plain",
        "packed/sequential K=2", "launches K solo/packed K=2",
    ]  # fmt: skip
    assert [row[0] for row in rows] == ["small_cnn"]
    assert all(float(value) > 0 for value in rows[0][1:]), rows
    tests = re.search(r"Tests \(tests/sparsity/test_no_host_sync.py\): (\d+) passed, (\d+) failed", text)
    assert tests is not None, text
    passed, failed = tests.groups()
    assert int(passed) >= 1, text
    assert failed == "0", text
    assert re.findall(r"^\| ([\w-]+) \| (.+?) \| \d+ \|$", text, re.MULTILINE) == [
        ("tests", "ok"), ("sparse", "ok"), ("train", "ok"), ("pack-2", "ok")
    ]  # fmt: skip


def test_gpu_table_reports_parts_that_failed_or_ran_out_of_time(tmp_path):
    (tmp_path / "parts.tsv").write_text(
        "tests\t1\t12\t90\nsparse\t124\t70\t70\ntrain\t0\t5\t90\npack-8\tskipped\t0\t0\n"
    )
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_table.py"), str(tmp_path), "--models", "resnet18", "--packs", "8"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "device unknown (no benchmark finished)" in out.stdout
    header, rows = _table(out.stdout)
    assert len(header) == 7
    assert rows == [["resnet18"] + ["—"] * 6]
    assert "Tests (tests/sparsity/test_no_host_sync.py): no report." in out.stdout
    for line in ("| tests | failed (exit 1) | 12 |", "| sparse | timed out at its limit of 70 s | 70 |",
                 "| train | ok | 5 |", "| pack-8 | skipped: no time left | 0 |"):  # fmt: skip
        assert line in out.stdout
    assert (tmp_path / "table.md").read_text() == out.stdout


def test_gpu_check_refuses_an_unknown_argument():
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--fast"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "gpu_check.sh: unknown argument '--fast' (allowed: --cpu-smoke, --out DIR)"


def test_gpu_check_refuses_out_without_a_folder():
    """``--out`` as the last argument: one line naming it, exit 2 as for any bad argument (bash's own ``${2:?}``
    message, prefixed with the script's line number, exited 1)."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--out"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "gpu_check.sh: --out needs a folder (--out DIR)"


@pytest.mark.parametrize("where", ["/proc/tuneprune-gpu-check", "a-file/figures"])
def test_gpu_check_refuses_an_out_folder_it_cannot_make_before_it_writes_anywhere(where, tmp_path):
    """A ``--out`` that cannot be made (under /proc, under a file): ``cd`` failed, DIR became empty and the script
    went on with ``rm -f /*.json`` and wrote its parts into ``/``; now one line naming it, exit 2, nothing removed
    or written. (``rm`` is a recorder on PATH and PYTHON fails, so that the old script removed nothing here.)"""
    (tmp_path / "a-file").write_text("not a folder")
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "rm").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "removed"}\n')
    (shims / "rm").chmod(0o755)
    out_dir = where if where.startswith("/") else str(tmp_path / where)
    env = {**os.environ, "PYTHON": "/bin/false", "PATH": f"{shims}:{os.environ['PATH']}"}
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--cpu-smoke", "--out", out_dir],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"gpu_check.sh: --out {out_dir}: cannot make or write that folder (allowed: a writable folder)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "bin"]  # no rm ran


@pytest.mark.ray
def test_bench_early_stop_prints_each_rule_as_a_ratio_to_no_stopping():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_early_stop.py"), "--seeds", "0", "--trials", "2",
         "--epochs", "2"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    medians = dict(re.findall(r"^\| (none|first|crowding|epsilon_net) \| [0-9.]+ \| ([0-9.]+) \|$", out.stdout, re.M))
    assert sorted(medians) == ["crowding", "epsilon_net", "first", "none"], out.stdout
    assert float(medians["none"]) == 1.0  # epochs as a ratio to the search without stopping
    assert all(0 < float(r) <= 1.0 for r in medians.values())  # stopping never trains more


@pytest.mark.ray  # the script starts its own local Ray
def test_bench_trainable_prints_both_apis_and_their_ratio():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_trainable.py"), "--trials", "3", "--iterations", "2",
         "--matmuls", "1", "--repeats", "1"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    header, rows = _table(out.stdout)
    assert header[0] == "API"
    assert len(header) == 8, header
    assert [row[0] for row in rows] == [
        "function 1", "class 1", "function, median", "class, median", "class / function (medians)"
    ], out.stdout  # fmt: skip
    for row in rows:
        assert all(float(cell) > 0 for cell in row[1:]), row
