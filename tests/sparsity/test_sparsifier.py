"""The Sparsifier hook: wrapping, per-iteration masks, metrics, state and finalize (formulas §1-§4)."""

import io
import math
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tuneprune.models import create_model
from tuneprune.sparsity import (
    AdaptiveScheduler,
    ConstantSchedule,
    CubicSchedule,
    Elimination,
    LogDensityTheta,
    Sparsifier,
    SparsityConfig,
    original_weight,
    prunable_layers,
    prunable_sparsity,
    threshold_operator,
)
from tuneprune.sparsity.schedules import AdaptiveSchedule, StepFunction

METRIC_KEYS = {"sparsity_k", "sparsity", "theta", "mask_stability", "mean_mask_stability", "lambda", "eliminated"}


def make(config: dict, steps_per_epoch: int = 4, epochs: int = 2, seed: int = 0) -> tuple[nn.Module, Sparsifier]:
    torch.manual_seed(seed)
    model = create_model("small_cnn", 10, 1)
    return model, Sparsifier.from_config(
        model, SparsityConfig(**config), steps_per_epoch=steps_per_epoch, epochs=epochs
    )


def train_steps(model: nn.Module, sparsifier: Sparsifier, steps: range, lr: float = 0.05) -> torch.optim.Optimizer:
    assert sparsifier.iteration == steps.start  # the sparsifier counts its iterations
    g = torch.Generator().manual_seed(steps.start)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    for _ in steps:
        sparsifier.before_iteration()
        x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        sparsifier.after_backward()
        optimizer.step()
    return optimizer


def end_epoch(sparsifier: Sparsifier) -> dict[str, float]:
    sparsifier.end_epoch()
    return sparsifier.metrics()


def test_a_schedule_of_the_documented_protocol_has_metrics_and_a_state():
    """docs/training.md: a schedule of your own has the Schedule methods; a StepFunction only ``sparsity_at``."""

    class Linear(StepFunction):
        def sparsity_at(self, step: int) -> float:
            return min(0.5, step / 8)

    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1)
    sparsifier = Sparsifier(model, Linear())
    train_steps(model, sparsifier, range(8))
    metrics = end_epoch(sparsifier)
    assert (metrics["sparsity_k"], metrics["lambda"]) == (0.5, 0.0)
    assert sparsifier.state_dict()["schedule"] == {}


def plain_weights(sparsifier: Sparsifier) -> list[torch.Tensor]:
    return [original_weight(m).detach() for m in sparsifier._modules]


def test_prunable_layers_are_every_conv_and_linear():
    model = create_model("small_cnn", 10, 1)
    names = [name for name, _ in prunable_layers(model)]
    assert names == ["features.0", "features.3", "features.7", "classifier"]
    assert [name for name, _ in prunable_layers(model, min_size=1000)] == ["features.3", "features.7", "classifier"]
    assert prunable_sparsity(model) == 0.0


def test_wrapping_keeps_names_and_trains_the_dense_weights():
    model, sparsifier = make({"target": 0.9})
    assert sparsifier.names == ["features.0", "features.3", "features.7", "classifier"]
    assert all(original_weight(m) in set(model.parameters()) for m in sparsifier._modules)
    with pytest.raises(ValueError, match="no prunable layers"):
        Sparsifier(nn.Sequential(nn.ReLU()), ConstantSchedule(0.9))


@pytest.mark.parametrize("p", [1.0, 3.0, float("inf")])
def test_forward_uses_thresholded_weights_at_the_global_threshold(p):
    model, sparsifier = make({"target": 0.8, "operator_p": p, "scheduler": {"type": "constant"}})
    sparsifier.before_iteration()
    weights = plain_weights(sparsifier)
    T = torch.quantile(torch.cat([w.flatten().abs() for w in weights]), 0.8)
    for module, w in zip(sparsifier._modules, weights, strict=True):
        torch.testing.assert_close(module.weight, threshold_operator(w, T, p))
    assert abs(prunable_sparsity(model) * sum(w.numel() for w in weights) - 0.8 * sum(w.numel() for w in weights)) <= 1


def test_layer_threshold_mode_prunes_each_layer_to_the_target():
    _model, sparsifier = make({"target": 0.9, "threshold": "layer", "scheduler": {"type": "constant"}})
    sparsifier.before_iteration()
    for module in sparsifier._modules:
        assert abs(int((module.weight == 0).sum()) - 0.9 * module.weight.numel()) <= 1
    assert all(abs(s - 0.9) < 1e-2 for s in sparsifier.layer_sparsity.values())


def test_zero_sparsity_prunes_nothing():
    _model, sparsifier = make({"target": 0.9, "scheduler": {"start_epoch": 1}})
    sparsifier.before_iteration()
    for module, w in zip(sparsifier._modules, plain_weights(sparsifier), strict=True):
        assert torch.equal(module.weight, w)
    assert sparsifier.metrics()["sparsity"] == 0.0


def test_end_epoch_metrics_after_cubic_training():
    model, sparsifier = make({"target": 0.9, "theta": {"policy": "log_density", "alpha": 0.1}}, epochs=4)
    train_steps(model, sparsifier, range(4))
    metrics = end_epoch(sparsifier)
    assert set(metrics) == METRIC_KEYS
    assert metrics["sparsity_k"] == pytest.approx(0.9 - 0.9 * 0.5**3)  # cubic at step 4 of k1 = 8
    assert metrics["sparsity"] == pytest.approx(metrics["sparsity_k"], abs=1e-4)
    assert 0 < metrics["theta"] < 1
    assert 0 < metrics["mask_stability"] <= 1
    assert metrics["lambda"] == 0.0
    assert metrics["eliminated"] == 0.0
    assert metrics["theta"] == pytest.approx(sum(sparsifier.layer_theta.values()) / 4)
    assert set(sparsifier.layer_sparsity) == set(sparsifier.names)


def test_end_epoch_recomputes_threshold_on_the_current_weights():
    model, sparsifier = make({"target": 0.7, "scheduler": {"type": "constant"}})
    train_steps(model, sparsifier, range(3), lr=0.5)
    end_epoch(sparsifier)
    weights = plain_weights(sparsifier)
    T = torch.quantile(torch.cat([w.flatten().abs() for w in weights]), 0.7)
    for module, w in zip(sparsifier._modules, weights, strict=True):
        torch.testing.assert_close(module.weight, threshold_operator(w, T, 3.0))


def test_eliminated_fraction_and_zero_gradients():
    model, sparsifier = make({"target": 0.8, "scheduler": {"type": "constant"}, "drop": {"rho": 0.5}})
    sparsifier.before_iteration()
    F.cross_entropy(model(torch.randn(8, 1, 8, 8)), torch.arange(8)).backward()
    weights = plain_weights(sparsifier)
    t = torch.quantile(torch.cat([w.flatten().abs() for w in weights]), 0.4)
    for module, w in zip(sparsifier._modules, weights, strict=True):
        grad = original_weight(module).grad
        assert grad is not None
        assert (grad[w.abs() < t] == 0).all()
    assert end_epoch(sparsifier)["eliminated"] == pytest.approx(0.4, abs=1e-4)
    model, sparsifier = make(
        {"target": 0.8, "scheduler": {"type": "constant"}, "theta": {"policy": "constant", "value": 0.0}}
    )
    assert end_epoch(sparsifier)["eliminated"] == pytest.approx(0.8, abs=1e-4)


def test_adaptive_metrics_report_lambda():
    model, sparsifier = make(
        {"target": 0.95, "scheduler": {"type": "adaptive", "preset": "lambda1", "initial_sparsity": 0.5}}
    )
    train_steps(model, sparsifier, range(4))
    metrics = end_epoch(sparsifier)
    assert isinstance(sparsifier.schedule, AdaptiveSchedule)
    scheduler = sparsifier.schedule.scheduler
    assert metrics["lambda"] == scheduler.lam > 0
    assert metrics["sparsity_k"] == scheduler.sparsity <= 0.95


def test_injected_schedule_and_theta_equal_the_config_path():
    config = {"target": 0.9, "threshold": "layer", "operator_p": 2.0, "theta": {"policy": "log_density", "alpha": 0.2, "mode": "layer"},
              "drop": {"rho": 0.3, "mode": "layer"}}  # fmt: skip
    model, configured = make(config)
    torch.manual_seed(0)
    plain = create_model("small_cnn", 10, 1)
    injected = Sparsifier(
        plain,
        schedule=CubicSchedule(0.9, start_step=0, end_step=4),  # k1 = half of 2 epochs of 4 iterations
        theta=LogDensityTheta(0.2, mode="layer"),
        p=2.0,
        threshold="layer",
        elimination=Elimination(0.3, final_sparsity=0.9, mode="layer"),
    )
    train_steps(model, configured, range(3))
    train_steps(plain, injected, range(3))
    assert end_epoch(injected) == end_epoch(configured)
    assert injected.layer_theta == configured.layer_theta


class RecordingSchedule(ConstantSchedule):
    """A user's schedule: records the iterations and stabilities the sparsifier reports."""

    def __init__(self) -> None:
        super().__init__(0.8)
        self.seen: list[tuple[int, float]] = []

    def observe(self, step: int, stability: torch.Tensor) -> None:
        self.seen.append((step, float(stability)))


def test_the_sparsifier_counts_iterations_and_owns_the_mean_stability():
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1)
    schedule = RecordingSchedule()
    sparsifier = Sparsifier(model, schedule)
    train_steps(model, sparsifier, range(4), lr=0.5)
    assert [step for step, _ in schedule.seen] == [1, 2, 3]  # mu_k needs the masks of k - 1
    first = end_epoch(sparsifier)
    assert first["mask_stability"] == pytest.approx(sum(mu for _, mu in schedule.seen) / 3)
    assert first["mean_mask_stability"] == first["mask_stability"]
    assert sparsifier.metrics() == first  # a read: nothing changes
    train_steps(model, sparsifier, range(4, 8), lr=0.5)
    second = end_epoch(sparsifier)
    assert second["mask_stability"] == pytest.approx(sum(mu for _, mu in schedule.seen[3:]) / 4)
    assert second["mean_mask_stability"] == pytest.approx((first["mask_stability"] + second["mask_stability"]) / 2)
    assert sparsifier.mean_mask_stability == second["mean_mask_stability"]


def test_metrics_before_any_masks_is_an_error():
    _, sparsifier = make({"target": 0.9})
    with pytest.raises(RuntimeError, match="no masks yet"):
        sparsifier.metrics()


def test_state_dict_loads_with_weights_only_and_resumes_exactly():
    config = {
        "target": 0.95,
        "theta": {"policy": "log_density"},
        "scheduler": {"type": "adaptive", "preset": "lambda1"},
    }
    model, sparsifier = make(config)
    optimizer = train_steps(model, sparsifier, range(4))
    end_epoch(sparsifier)
    buffer = io.BytesIO()
    torch.save(
        {"model": model.state_dict(), "sparsifier": sparsifier.state_dict(), "optimizer": optimizer.state_dict()},
        buffer,
    )
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    train_steps(model, sparsifier, range(4, 8))
    straight = end_epoch(sparsifier)

    resumed_model, resumed = make(config, seed=1)
    resumed_model.load_state_dict(saved["model"])
    resumed.load_state_dict(saved["sparsifier"])
    train_steps(resumed_model, resumed, range(4, 8))
    assert end_epoch(resumed) == straight
    for a, b in zip(model.state_dict().values(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_finalize_returns_a_plain_model_with_exact_zeros():
    model, sparsifier = make({"target": 0.9, "scheduler": {"type": "constant"}})
    train_steps(model, sparsifier, range(3))
    end_epoch(sparsifier)
    x = torch.randn(4, 1, 8, 8)
    model.eval()
    wrapped_out = model(x)
    plain = sparsifier.finalize()
    assert sparsifier.finalize() is plain
    reference = create_model("small_cnn", 10, 1)
    assert list(plain.state_dict()) == list(reference.state_dict())
    assert not any("parametriz" in name for name, _ in plain.named_modules())
    assert type(plain.classifier) is nn.Linear
    reference.load_state_dict(plain.state_dict())
    torch.testing.assert_close(reference.eval()(x), wrapped_out)
    total = sum(m.weight.numel() for _, m in prunable_layers(plain))
    assert abs(prunable_sparsity(plain) * total - 0.9 * total) <= 1


def test_importing_the_engine_pulls_in_neither_ray_nor_mlflow_nor_the_loop():
    code = (
        "import tuneprune.sparsity, sys; "
        "assert 'ray' not in sys.modules and 'mlflow' not in sys.modules; "
        "assert 'tuneprune.training' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_adaptive_loop_follows_the_published_rule_on_the_masks_it_measures():
    """formulas §1.4, §3, §9 written out here: before each iteration T is the S_k-quantile of |w| (full sort, linear
    interpolation), mu_k the mean over layers of the Jaccard index of the kept sets |w| > T of two consecutive
    iterations, and S_{k+1} = min(S_f, S_k + l lambda(S_k) (mu_k - mu_{k-1})) when mu rose, l = 160 / E. The
    Sparsifier's S_k must follow it iteration by iteration (to the float32 of its mu)."""
    A, B, C, D, final, epochs, steps = 0.5, 0.8, 20.0, -0.01, 0.9, 2, 6
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 10))
    schedule = AdaptiveSchedule(
        AdaptiveScheduler(A, B, C, D, final_sparsity=final, epochs=epochs, initial_sparsity=0.3)
    )
    sparsifier = Sparsifier(model, schedule)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    layers = [original_weight(m) for m in model if isinstance(m, nn.Linear)]
    g = torch.Generator().manual_seed(1)
    sparsity, previous_kept, previous_mu = 0.3, None, None
    for _ in range(epochs * steps):
        magnitudes = [w.detach().abs().flatten().double() for w in layers]
        ordered = torch.cat(magnitudes).sort().values
        position = sparsity * (len(ordered) - 1)
        lower = int(position)
        T = ordered[lower] + (position - lower) * (ordered[min(lower + 1, len(ordered) - 1)] - ordered[lower])
        sparsifier.before_iteration()
        assert sparsifier.metrics()["sparsity_k"] == pytest.approx(sparsity, abs=1e-5)
        kept = [m > T for m in magnitudes]
        assert sparsifier.metrics()["sparsity"] == 1 - sum(int(k.sum()) for k in kept) / len(ordered)
        if previous_kept is not None:
            mu = sum(int((a & b).sum()) / int((a | b).sum()) for a, b in zip(kept, previous_kept, strict=True)) / 2
            if previous_mu is not None and mu > previous_mu:
                lam = max(0.0, A / (1 + math.exp(-C * (B - sparsity))) + D)
                sparsity = min(final, sparsity + 160 / epochs * lam * (mu - previous_mu))
            previous_mu = mu
        previous_kept = kept
        x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    assert sparsity > 0.3  # the masks settled and the rule raised S_k
