"""Training loop: recipe, reproducibility, checkpoints and exact resume (foundation issue, item 5)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
import torch
import torch.nn as nn

from tuneprune.shared.config import ConfigError, validate
from tuneprune.training import RunConfig, TrainingDiverged, load_model, save_model, train
from tuneprune.training.checkpoint import CHECKPOINT_NAME, load_file, save_atomic
from tuneprune.training.optim import PackedSGD, has_weight_decay

FAST = {"model": "small_cnn", "dataset": "digits", "epochs": 2, "batch_size": 64}


def test_no_weight_decay_on_batchnorm_and_bias():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    decayed = [name for name, p in model.named_parameters() if has_weight_decay(p)]
    assert decayed == ["0.weight", "3.weight"]


def test_cosine_decays_to_zero_per_step():
    sgd = PackedSGD([RunConfig()], [True], total_steps=10, device=torch.device("cpu"))
    assert sgd.lr_at(5) == pytest.approx([0.05], abs=1e-9)
    assert sgd.lr_at(10) == pytest.approx([0.0], abs=1e-12)


@pytest.mark.parametrize("start_epoch", [2, 3, 3.9])
def test_cubic_schedule_starting_at_or_after_its_end_is_refused(start_epoch):
    """formulas §1.5 ramps S_k from k0 (start_epoch) to k1 (end_fraction of training): with k0 >= k1 there is no ramp,
    S_k jumps from 0 to the target in one step (one-shot pruning), so the config is refused at load, naming the field
    and the allowed range."""
    sparsity = {"target": 0.9, "scheduler": {"start_epoch": start_epoch, "end_fraction": 0.5}}
    with pytest.raises(ConfigError) as refused:
        validate(RunConfig, {"epochs": 4, "sparsity": sparsity})
    message = str(refused.value)
    assert message.count("\n") == 0
    assert f"sparsity.scheduler.start_epoch = {float(start_epoch)}" in message
    assert "allowed: [0, 2)" in message
    accepted = validate(RunConfig, {"epochs": 4, "sparsity": {**sparsity, "scheduler": {"start_epoch": 1.5}}})
    assert accepted.sparsity is not None
    assert accepted.sparsity.scheduler.start_epoch == 1.5


def test_dense_small_cnn_learns_digits_and_reports_every_epoch():
    seen = []
    result = train(RunConfig(**{**FAST, "epochs": 8}), callbacks=[lambda m, c: seen.append(m)])
    assert [m["epoch"] for m in seen] == list(range(1, 9))
    for key in ("train_loss", "val_acc", "val_loss", "test_acc", "test_loss", "epoch_time"):
        assert key in seen[-1]
    assert result.final["test_acc"] >= 0.95


def test_cpu_runs_are_reproducible():
    a = train(RunConfig(**FAST))
    b = train(RunConfig(**FAST))
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]
    assert all(
        torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True)
    )


def test_resume_from_checkpoint_equals_uninterrupted(tmp_path):
    straight = train(RunConfig(**{**FAST, "epochs": 3}))
    part = RunConfig(**{**FAST, "epochs": 3})
    with pytest.raises(_Stop):
        train(part, checkpoint_dir=tmp_path, callbacks=[_stop_after(1)])
    assert load_file(tmp_path / CHECKPOINT_NAME)["epoch"] == 1
    resumed = train(part, checkpoint_dir=tmp_path, resume_from=tmp_path)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert resumed.history[-1]["train_loss"] == straight.history[-1]["train_loss"]
    assert all(
        torch.equal(x, y)
        for x, y in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True)
    )
    other = RunConfig(**{**FAST, "epochs": 4, "lr": 0.05})
    with pytest.raises(
        ConfigError, match=r"checkpoint.pt: the checkpoint of a run whose config differs in epochs, lr;"
    ):
        train(other, resume_from=tmp_path)


class _Stop(Exception):
    pass


def _stop_after(epochs: int):
    def callback(metrics, checkpoint):
        if metrics["epoch"] >= epochs:
            raise _Stop

    return callback


@pytest.mark.parametrize(
    "sparsity", [None, {"target": 0.9, "threshold": "layer", "drop": {"rho": 0.5, "mode": "layer"}}]
)
def test_diverging_loss_fails_the_run_at_the_end_of_its_epoch(sparsity):
    """The losses stay on the device during the epoch; the first bad step is named when it ends."""
    seen = []
    config = RunConfig(**{**FAST, "lr": 1e6, "grad_clip": None, "epochs": 3, "sparsity": sparsity})
    with pytest.raises(TrainingDiverged, match=r"training loss became (nan|inf) at epoch 1, step \d+$"):
        train(config, callbacks=[lambda m, c: seen.append(m)])
    assert seen == []  # no epoch was reported


def test_the_progress_display_ends_with_an_interrupted_run():
    """Ctrl-C (a KeyboardInterrupt inside an epoch, as this callback's error): the display is closed. In a terminal
    it hid the cursor for good; elsewhere its heartbeat thread went on printing the run's line every 5 s."""

    def interrupt(metrics: dict, checkpoint: object) -> None:
        raise KeyboardInterrupt

    before = {thread.ident for thread in threading.enumerate()}
    with pytest.raises(KeyboardInterrupt):
        train(RunConfig(**FAST), callbacks=[interrupt], progress=True)
    deadline = time.monotonic() + 2.0
    while {thread.ident for thread in threading.enumerate()} - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {thread.ident for thread in threading.enumerate()} <= before


def test_bf16_autocast_and_channels_last_train():
    config = RunConfig(**{**FAST, "epochs": 3, "precision": "bf16", "channels_last": True, "sparsity": {"target": 0.5}})
    result = train(config)
    assert result.final["test_acc"] > 0.5
    assert result.final["sparsity"] == pytest.approx(0.5, abs=1e-3)  # the cubic schedule reached the target


def test_any_user_module_trains():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    result = train(RunConfig(**FAST), model=model)
    assert result.final["test_acc"] > 0.5


def test_model_file_round_trip_and_errors(tmp_path):
    result = train(RunConfig(**{**FAST, "epochs": 1}))
    path = save_model(result.model, result.config.model_dump(mode="json"), tmp_path / "model.pt", 10, 1)
    model, config = load_model(path)
    assert config.model == "small_cnn"
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), result.model.state_dict().values(), strict=True)
    )
    with pytest.raises(ConfigError, match=r"missing.pt: checkpoint or model file not found"):
        load_model(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ConfigError, match=r"corrupt.pt: corrupt or unreadable"):
        load_model(corrupt)


def test_atomic_save_keeps_previous_file_when_interrupted(tmp_path):
    target = tmp_path / "ckpt.pt"
    save_atomic({"epoch": 1}, target)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("killed mid-save")

    with pytest.raises(RuntimeError):
        save_atomic({"epoch": 2, "x": Boom()}, target)
    assert load_file(target)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_cli_train_json_and_bad_input(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "tuneprune.cli", "train", "--set", "epochs=2", "--set", "batch_size=64", "--json", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    metrics = json.loads(ok.stdout)
    assert 0.0 <= metrics["test_acc"] <= 1.0
    assert (tmp_path / "model.pt").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "tuneprune.cli", "train", "--set", "sparsity.drop.rho=1.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0
    assert "sparsity.drop.rho = 1.5" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_eval_mode_restores_each_modules_mode_also_when_the_block_raises():
    from tuneprune.training.evaluate import eval_mode

    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    model.train()
    seen = []

    def inside() -> None:
        with eval_mode(model):
            seen.extend([model.training, model[1].training])
            raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        inside()
    assert seen == [False, False]
    assert [model.training, model[1].training] == [True, True]
    model.eval()
    with eval_mode(model):
        pass
    assert not model.training
