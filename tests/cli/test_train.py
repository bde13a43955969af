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


@pytest.mark.parametrize("batch_size", [68, 1])  # 1293 digits training images: 68 leaves a last batch of one
def test_a_last_batch_of_one_that_batchnorm_cannot_train_on_is_refused_before_training(batch_size, capsys):
    """resnet18 at 8 px pools to 1x1 before a BatchNorm: one image gives it one value per channel. It trained an epoch,
    then crashed with a traceback."""
    argv = ["train", "--set", "model=resnet18", "--set", "image_size=8", "--set", f"batch_size={batch_size}"]
    assert main([*argv, "--set", "epochs=1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tuneprune train: error: batch_size = {batch_size}: ")
    assert "resnet18's BatchNorm cannot train on one image; allowed: " in err
    assert err.count("\n") == 1


def test_a_last_batch_of_one_trains_where_the_model_can(capsys):
    """The same last batch of one, on a model that trains on it: no refusal."""
    argv = [str(ROOT / "configs/digits_dense.yaml"), "--set", "batch_size=68", "--set", "epochs=1", "--no-progress"]
    assert main(["train", *argv, "--json"]) == 0
    assert '"test_acc"' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--resume"], "--resume: needs --out, the directory whose checkpoint.pt the run goes on from"),
        ([str(ROOT / "configs/digits_dense.yaml"), "--from-run", "0123"], "config = '"),
    ],
    ids=["resume-without-out", "config-with-from-run"],
)
def test_options_that_would_be_ignored_are_refused_in_one_line(argv, error, capsys):
    """Each was silently ignored: --resume without --out trained from scratch, a config beside --from-run went unread."""
    assert main(["train", *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tuneprune train: error: {error}")
    assert err.count("\n") == 1


def test_data_dir_expands_the_home_directory():
    """``data_dir: ~/data`` meant a folder named ``~`` in the working directory."""
    from tuneprune.runs import TrialSpec
    from tuneprune.shared.config import validate

    assert validate(TrialSpec, {"data_dir": "~/data"}).data_dir == Path.home() / "data"
