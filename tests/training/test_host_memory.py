"""CPU training keeps the memory a step frees: the next step's allocations touch no fresh pages."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc thresholds"
)

# A fresh process: 64 MiB allocated, freed and allocated again, the page faults of the second
# allocation counted (the fewest of three rounds: the heap may still grow in the first) before
# and after a CPU trainer is built (a step's activations, in small).
FAULTS = """
import json, resource, sys
import torch
from tuneprune.training import PackedTrainer, RunConfig

def refault() -> int:
    torch.ones(16 * 2**20)  # 64 MiB, freed at once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(16 * 2**20)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = min(refault() for _ in range(3))
PackedTrainer([RunConfig(model="small_cnn", dataset="digits", epochs=1, device="cpu")])
print(json.dumps([default, min(refault() for _ in range(3))]))
"""


def faults(env: dict[str, str]) -> list[int]:
    out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_cpu_trainer_keeps_freed_memory_for_reuse():
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")}
    default, kept = faults(env)
    assert default > 10_000  # 64 MiB from a fresh mapping: one fault per 4 KiB page
    assert kept < 1_000  # from the heap, the pages already there


def test_the_users_allocator_settings_are_left_as_they_are():
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": str(128 * 2**10)}
    default, kept = faults(env)
    assert default > 10_000
    assert kept > 10_000
