"""Stochastic Pruning (formulas §5): deterministic limit, seeded samples, exact counts, best of n, fine-tuning, variance."""

from __future__ import annotations

import copy
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from tuneprune.cli import main
from tuneprune.data import load_dataset
from tuneprune.output.summaries import summary_json
from tuneprune.shared.config import ConfigError
from tuneprune.sparsity import prunable_layers
from tuneprune.stochastic import (
    FinetuneConfig,
    Pruner,
    StochasticConfig,
    TargetConfig,
    feature_variance,
    finetune,
    run_stochastic,
    target_layers,
)
from tuneprune.training import load_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dense(dense_digits):
    """A fresh copy of the session's dense model with its run config and data."""
    model, config = load_model(dense_digits[0])
    return model, config, load_dataset(config)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: module.weight.detach().clone() for name, module in prunable_layers(model)}


def reference_prune(model: nn.Module, names: list[str], rate: float) -> dict[str, torch.Tensor]:
    """Global magnitude pruning written independently: zero everything at or below the k-th magnitude."""
    w = weights(model)
    flat = torch.cat([w[n].abs().flatten() for n in names])
    k = round(rate * flat.numel())
    threshold = flat.kthvalue(k).values
    return {n: (w[n] * (w[n].abs() > threshold)) if n in names else w[n] for n in w}


def test_first_conv_and_classifier_are_excluded_by_default(dense):
    model = dense[0]
    names = [n for n, _ in target_layers(model, TargetConfig())]
    assert names == ["features.3", "features.7"]
    everything = TargetConfig(exclude_first_conv=False, exclude_classifier=False)
    assert [n for n, _ in target_layers(model, everything)] == ["features.0", "features.3", "features.7", "classifier"]
    with pytest.raises(ConfigError, match=r"target.exclude: no module named 'nope'"):
        target_layers(model, TargetConfig(exclude=["nope"]))


@pytest.mark.parametrize("rate", [0.5, 0.9, 0.98])
def test_sigma_zero_is_deterministic_pruning_exactly(dense, rate):
    model = dense[0]
    layers = target_layers(model, TargetConfig())
    expected = reference_prune(model, [n for n, _ in layers], rate)
    pruner = Pruner(layers)
    for seed in (0, 7):
        pruner.apply(0.0, rate, seed)
        got = weights(model)
        assert all(torch.equal(got[n], expected[n]) for n in expected)


@pytest.mark.parametrize("rate", [0.3, 0.9, 0.95])
def test_pruning_removes_exactly_round_r_n_and_leaves_excluded_layers(dense, rate):
    model = dense[0]
    before = weights(model)
    layers = target_layers(model, TargetConfig())
    names = [n for n, _ in layers]
    Pruner(layers).apply(0.003, rate, seed=11)
    after = weights(model)
    total = sum(before[n].numel() for n in names)
    assert sum(int((after[n] == 0).sum()) for n in names) == round(rate * total)
    for name in ("features.0", "classifier"):
        assert torch.equal(after[name], before[name])


def test_seeded_sample_is_recreated_bit_for_bit(dense):
    model = dense[0]
    pruner = Pruner(target_layers(model, TargetConfig()))
    pruner.apply(0.005, 0.9, seed=1234)
    first = weights(model)
    pruner.apply(0.005, 0.9, seed=99)
    other = weights(model)
    pruner.apply(0.005, 0.9, seed=1234)
    again = weights(model)
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not all(torch.equal(first[n], other[n]) for n in first)
    pruner.restore()
    assert all(int((w == 0).sum()) == 0 for w in weights(model).values())


def test_best_of_n_beats_the_median_and_sigma_zero_matches_the_baseline(dense):
    model, run_config, data = dense
    config = StochasticConfig(sigma=0.005, rate=0.8, samples=5, seed=3, feature_variance=False)
    report = run_stochastic(config, copy.deepcopy(model), run_config, data)
    assert report.stochastic["val_acc"] == max(report.sample_val_acc) >= statistics.median(report.sample_val_acc)
    assert report.sample_val_acc[report.best_sample] == report.stochastic["val_acc"]
    assert report.dense["test_acc"] > 0.9
    plain = run_stochastic(config.model_copy(update={"sigma": 0.0}), model, run_config, data)
    assert plain.stochastic == plain.deterministic
    assert (plain.pruned_layers_sparsity, plain.model_sparsity) == (
        report.pruned_layers_sparsity,
        report.model_sparsity,
    )


def test_both_sparsities_are_reported_each_named_for_what_it_measures(dense):
    """The rate controls the pruned layers' sparsity; the whole model's is lower (first conv and classifier kept)."""
    model, run_config, data = dense
    config = StochasticConfig(sigma=0.002, rate=0.9, samples=2, seed=1, feature_variance=False)
    report = summary_json(run_stochastic(config, copy.deepcopy(model), run_config, data))
    pruned = sum(m.weight.numel() for _, m in target_layers(model, TargetConfig()))
    everything = sum(m.weight.numel() for _, m in prunable_layers(model))
    assert report["pruned_layers_sparsity"] == round(0.9 * pruned) / pruned
    assert report["model_sparsity"] == round(0.9 * pruned) / everything < report["pruned_layers_sparsity"]
    for model_report in (report["deterministic"], report["stochastic"]):
        assert model_report["pruned_layers_sparsity"] == report["pruned_layers_sparsity"]
        assert model_report["model_sparsity"] == report["model_sparsity"]
    assert "sparsity" not in report


def test_finetuning_keeps_the_mask_and_frozen_batchnorm(dense):
    model, run_config, data = dense
    layers = target_layers(model, TargetConfig())
    masks = Pruner(layers).apply(0.002, 0.9, seed=5)
    stats = {n: b.clone() for n, b in model.named_buffers() if "running" in n}
    moved = weights(model)
    final = finetune(model, [m for _, m in layers], masks, data, run_config, FinetuneConfig(epochs=1, lr=0.01))
    assert 0.0 <= final["val_acc"] <= 1.0
    for (name, module), mask in zip(layers, masks, strict=True):
        assert torch.equal(module.weight[~mask], torch.zeros(int((~mask).sum())))
        assert not torch.equal(module.weight, moved[name])
    assert all(torch.equal(b, stats[n]) for n, b in model.named_buffers() if "running" in n)


def test_feature_variance_is_channel_variance_summed_and_averaged_over_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    x = torch.randn(8, 2, 4, 4)
    got = feature_variance(model, x, batch_size=4)
    with torch.no_grad():
        expected_conv = (
            sum(model[0](xb).transpose(0, 1).reshape(3, -1).var(1, correction=0).sum() for xb in x.split(4)) / 2
        )
        expected_fc = sum(model(xb).var(0, correction=0).sum() for xb in x.split(4)) / 2
    assert set(got) == {"0", "2"}
    assert got["0"] == pytest.approx(float(expected_conv), rel=1e-6)
    assert got["2"] == pytest.approx(float(expected_fc), rel=1e-6)


def test_cli_runs_from_a_checkpoint(dense_digits, tmp_path):
    cmd = [
        sys.executable, "-m", "tuneprune.cli", "prune-stochastic", "configs/stochastic_digits.yaml",
        "--checkpoint", str(dense_digits[0]), "--out", str(tmp_path), "--json",
        "--set", "samples=2", "--set", "finetune.epochs=0",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '"deterministic"' in proc.stdout
    assert {p.name for p in tmp_path.iterdir()} == {"report.json", "feature_variance.csv", "feature_variance.png"}


def test_a_rerun_into_the_same_out_keeps_no_feature_variance_of_the_run_before(dense_digits, tmp_path):
    """``--out`` (default ``runs/<config name>``) is shared by every run of a config: a run that does not measure the
    variance left the table and plot of the run before (another rate) beside its report.json on the old code."""
    from tuneprune.stochastic import prune_stochastic

    config, overrides = ROOT / "configs" / "stochastic_digits.yaml", ["samples=1", "finetune.epochs=0"]
    prune_stochastic(config, overrides, checkpoint=dense_digits[0], out=tmp_path, progress=False)
    assert (tmp_path / "feature_variance.csv").exists()
    overrides += ["rate=0.5", "feature_variance=false"]
    report, _ = prune_stochastic(config, overrides, checkpoint=dense_digits[0], out=tmp_path, progress=False)
    assert report.feature_variance == {}
    assert {p.name for p in tmp_path.iterdir()} == {"report.json"}


def test_cli_bad_config_exits_2_with_one_line_before_any_work():
    cmd = [
        sys.executable,
        "-m",
        "tuneprune.cli",
        "prune-stochastic",
        "configs/stochastic_digits.yaml",
        "--set",
        "rate=1.5",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "tuneprune prune-stochastic: error: rate = 1.5: Input should be less than 1"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("sigma=-0.1", "sigma = -0.1: Input should be greater than or equal to 0"),
        ("finetune.lr=0", "finetune.lr = 0: Input should be greater than 0"),
        ("train.model=nope", "train.model = 'nope': unknown model"),
        ("samplez=3", "samplez: unknown key"),
    ],
)
def test_bad_values_name_the_field(override, expected, capsys):
    assert main(["prune-stochastic", "configs/stochastic_digits.yaml", "--set", override]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert expected in lines[0], lines


def test_cli_from_run_on_an_unreachable_server_exits_2_within_seconds():
    """The old code tried to download the run's model for minutes (MLflow's HTTP retries) before its one line."""
    cmd = [
        sys.executable, "-m", "tuneprune.cli", "prune-stochastic", "configs/stochastic_digits.yaml",
        "--from-run", "0" * 32, "--tracking-uri", "http://127.0.0.1:1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(
        "tuneprune prune-stochastic: error: tracking_uri = 'http://127.0.0.1:1': MLflow server unreachable"
    )
