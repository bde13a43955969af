"""``tuneprune train``: the command line around one run."""

from __future__ import annotations

import pytest
import torch

from tuneprune.cli import main


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
def test_device_cuda_without_cuda_is_one_line_exit_2(capsys):
    assert main(["train", "--set", "epochs=1", "--set", "device=cuda", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tuneprune train: error: device = 'cuda': CUDA is not available on this machine")
    assert err.count("\n") == 1
