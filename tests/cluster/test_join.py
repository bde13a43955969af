"""check_local_resources: per-task resources a local Ray could never grant are refused before it starts."""

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
