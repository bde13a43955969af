"""``tuneprune train``: the command line around one run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tuneprune.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
def test_device_cuda_without_cuda_is_one_line_exit_2(capsys):
    assert main(["train", "--set", "epochs=1", "--set", "device=cuda", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tuneprune train: error: device = 'cuda': CUDA is not available on this machine")
    assert err.count("\n") == 1


def test_a_diverged_run_is_one_line_exit_1(capsys):
    """A run whose loss turns NaN failed (exit 1, not bad input's 2), said in one line: it was a traceback."""
    assert (
        main(
            ["train", str(ROOT / "configs/digits_dense.yaml"), "--set", "epochs=1", "--set", "lr=1e6", "--no-progress"]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("tuneprune train: error: the run diverged: training loss became nan at epoch 1, step ")
    assert err.count("\n") == 1
