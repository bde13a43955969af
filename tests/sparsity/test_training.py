"""Sparse training end to end through ``tuneprune.training.train`` and the CLI (formulas §1-§4)."""

import json
import subprocess
import sys

import pytest
import torch

from tuneprune.sparsity import prunable_sparsity
from tuneprune.training import RunConfig, train

RUN = {"model": "small_cnn", "dataset": "digits", "batch_size": 64}
ADAPTIVE = {"type": "adaptive", "preset": "lambda1", "initial_sparsity": 0.8}


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize(
    ("theta", "scheduler"),
    [
        ({"policy": "feather"}, {"type": "cubic"}),
        ({"policy": "constant", "value": 0.5}, {"type": "cubic"}),
        ({"policy": "log_density", "mode": "layer"}, {"type": "cubic"}),
        ({"policy": "log_density", "mode": "global"}, {"type": "cubic"}),
        ({"policy": "log_density", "mode": "global"}, ADAPTIVE),
        ({"policy": "feather"}, {**ADAPTIVE, "preset": "lambda2", "warmup_epochs": 1}),
    ],
    ids=[
        "feather",
        "constant",
        "logdensity-layer",
        "logdensity-global",
        "logdensity-global-lambda1",
        "feather-lambda2-warmup",
    ],
)
def test_training_reaches_the_target_with_exact_zeros(theta, scheduler):
    config = RunConfig(**RUN, epochs=4, sparsity={"target": 0.95, "theta": theta, "scheduler": scheduler})
    result = train(config)
    assert prunable_sparsity(result.model) == pytest.approx(0.95, abs=0.005)
    assert all(not name.endswith("parametrizations") for name, _ in result.model.named_modules())
    for entry in result.history:
        for key in ("sparsity_k", "sparsity", "theta", "mask_stability", "lambda", "eliminated"):
            assert key in entry
        assert entry["sparsity_k"] <= 0.95
    last = result.history[-1]
    assert last["sparsity_k"] == 0.95
    assert last["sparsity"] == pytest.approx(0.95, abs=1e-4)
    assert (last["lambda"] > 0) == (scheduler["type"] == "adaptive")
    if theta["policy"] == "log_density":
        assert 0 < last["theta"] < 1  # alpha('auto') = 0.09 at 95 %
    assert result.final["test_acc"] > 0.5


def test_drop_percentage_training_reports_eliminated_weights():
    sparsity = {"target": 0.9, "drop": {"rho": 0.5, "mode": "layer", "timeframe": "after_target"}, "threshold": "layer"}
    result = train(RunConfig(**RUN, epochs=3, sparsity=sparsity))
    assert result.history[0]["eliminated"] == 0.0  # target not reached yet (cubic reaches it at 1.5 epochs)
    assert result.history[-1]["eliminated"] == pytest.approx(0.45, abs=0.01)
    assert prunable_sparsity(result.model) == pytest.approx(0.9, abs=0.005)


class _Stop(Exception):
    pass


def _stop_after_first_epoch(metrics, checkpoint):
    raise _Stop


def test_resume_after_one_epoch_equals_two_epochs_straight(tmp_path):
    sparsity = {"target": 0.95, "theta": {"policy": "log_density"}, "scheduler": {**ADAPTIVE, "initial_sparsity": 0.5}}
    config = RunConfig(**RUN, epochs=2, sparsity=sparsity)
    straight = train(config)
    with pytest.raises(_Stop):
        train(config, checkpoint_dir=tmp_path, callbacks=[_stop_after_first_epoch])
    resumed = train(config, resume_from=tmp_path)

    def drop_times(h: dict) -> dict:
        return {k: v for k, v in h.items() if not k.endswith("_time")}

    assert [drop_times(h) for h in resumed.history] == [drop_times(h) for h in straight.history]
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_cli_train_sparse_prints_final_sparsity():
    sets = ["epochs=3", "sparsity.target=0.95", "num_threads=1"]
    cmd = [sys.executable, "-m", "tuneprune.cli", "train", *(arg for s in sets for arg in ("--set", s)), "--json"]
    completed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout)
    assert "test_acc" in summary
    assert summary["final_sparsity"] == pytest.approx(0.95, abs=0.005)
