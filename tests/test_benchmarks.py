"""The benchmark scripts run as the README shows them, on the smallest settings, and print their tables."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
    assert [k for k, _ in throughput] == ["1", "2"] and [k for k, _ in launches] == ["1", "2"], out.stdout
    for _, cells in throughput:
        assert all(float(c) > 0 for c in cells.split("|"))
    fused = [int(cells.split("|")[0]) for _, cells in launches]
    solo_twice = int(launches[1][1].split("|")[3])
    assert fused[1] < solo_twice  # two packed members issue fewer launches than two solo steps
