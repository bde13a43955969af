"""Cubic (formulas §1.5), adaptive (formulas §3, §9) and constant sparsity schedules."""

import itertools
import math

import pytest

from tuneprune.shared.config import ConfigError, validate
from tuneprune.sparsity import AdaptiveScheduler, ModelFamily, SparsityConfig, build_schedule, cubic_sparsity
from tuneprune.sparsity.schedules import AdaptiveSchedule, ConstantSchedule, CubicSchedule
from tuneprune.training import RunConfig


def test_cubic_at_start_middle_and_end():
    assert cubic_sparsity(0, 0.9, 0, 100) == 0.0
    assert cubic_sparsity(50, 0.9, 0, 100) == pytest.approx(0.9 - 0.9 * 0.5**3)
    assert cubic_sparsity(75, 0.9, 0, 100) == pytest.approx(0.9 - 0.9 * 0.25**3)
    assert cubic_sparsity(100, 0.9, 0, 100) == 0.9
    assert cubic_sparsity(1000, 0.9, 0, 100) == 0.9


def test_cubic_with_start_step_and_initial_sparsity():
    assert cubic_sparsity(5, 0.95, 10, 30, initial_sparsity=0.2) == 0.2
    assert cubic_sparsity(10, 0.95, 10, 30, initial_sparsity=0.2) == pytest.approx(0.2)
    assert cubic_sparsity(20, 0.95, 10, 30, initial_sparsity=0.2) == pytest.approx(0.95 - 0.75 / 8)
    values = [cubic_sparsity(k, 0.95, 10, 30, 0.2) for k in range(40)]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(values))
    assert max(values) == 0.95


def lambda_reference(S, A, B, C, D):
    return max(0.0, A / (1.0 + math.exp(-C * (B - S))) + D)


@pytest.mark.parametrize("S", [0.0, 0.5, 0.8, 0.9, 0.95, 0.99])
def test_published_lambdas_by_family(S):
    cases = {
        ("lambda1", "resnet"): (0.5, 0.80, 20, -0.010),
        ("lambda1", "densenet"): (0.5, 0.80, 20, -0.010),
        ("lambda1", "mobilenet"): (0.5, 0.80, 20, -0.007),
        ("lambda2", "resnet"): (0.3, 0.91, 75, 0.0),
        ("lambda2", "mobilenet"): (0.3, 0.91, 75, 0.003),
    }
    for (name, family), constants in cases.items():
        scheduler = AdaptiveScheduler.preset(name, family, final_sparsity=0.99, epochs=160)
        assert scheduler.lambda_at(S) == pytest.approx(lambda_reference(S, *constants), abs=1e-12)


def test_lambda_values_at_reference_points():
    lambda1 = AdaptiveScheduler.preset("lambda1", final_sparsity=0.99, epochs=160)
    lambda2 = AdaptiveScheduler.preset("lambda2", final_sparsity=0.99, epochs=160)
    assert lambda1.lambda_at(0.80) == pytest.approx(0.25 - 0.01)
    assert lambda2.lambda_at(0.91) == pytest.approx(0.15)
    assert lambda1.lambda_at(0.99) == pytest.approx(0.5 / (1 + math.exp(3.8)) - 0.01)
    assert lambda1.lambda_at(0.999) == 0.0  # A/(1+e^3.98) + D < 0 is clipped at 0
    assert lambda2.lambda_at(1e6) == 0.0  # no overflow
    assert lambda2.lambda_at(-1e6) == pytest.approx(0.3)


def run_recursion(mus, S0, S_f, epochs, A=0.5, B=0.8, C=20, D=-0.01):
    """formulas §3 written out independently."""
    step, S, previous, out = 160 / epochs, S0, None, []
    for mu in mus:
        if previous is not None and mu > previous:
            S = min(S_f, S + step * lambda_reference(S, A, B, C, D) * (mu - previous))
        previous = mu
        out.append(S)
    return out


def test_adaptive_recursion_on_falls_plateaus_and_rises():
    mus = [0.90, 0.95, 0.95, 0.93, 0.97, 0.97, 0.96, 0.99, 0.80, 0.85, 0.999, 0.5, 0.9, 0.99]
    scheduler = AdaptiveScheduler(0.5, 0.8, 20, -0.01, final_sparsity=0.95, epochs=20, initial_sparsity=0.5)
    assert scheduler.scale == 8.0  # l = 160 / E
    got = [scheduler.step(mu) for mu in mus]
    assert got == pytest.approx(run_recursion(mus, 0.5, 0.95, 20))
    assert got[0] == 0.5  # the first measurement is only a reference
    assert got[2] == got[1]  # plateau and fall freeze the sparsity
    assert got[3] == got[2]
    assert got[1] > got[0]
    assert max(got) <= 0.95  # reaches, never exceeds the target
    assert got[-1] == 0.95


def test_adaptive_never_exceeds_target_and_starts_at_most_there():
    scheduler = AdaptiveScheduler(5.0, 0.8, 20, 1.0, final_sparsity=0.9, epochs=1, initial_sparsity=0.95)
    assert scheduler.sparsity == 0.9
    for mu in (0.1, 0.9, 0.2, 1.0):
        assert scheduler.step(mu) <= 0.9


def test_l_scales_with_epochs():
    for epochs in (1, 10, 160, 320):
        assert AdaptiveScheduler.preset("lambda1", final_sparsity=0.9, epochs=epochs).scale == 160 / epochs


def test_adaptive_state_round_trip():
    a = AdaptiveScheduler.preset("lambda1", final_sparsity=0.98, epochs=10, initial_sparsity=0.6)
    for mu in (0.8, 0.85, 0.83):
        a.step(mu)
    b = AdaptiveScheduler.preset("lambda1", final_sparsity=0.98, epochs=10, initial_sparsity=0.6)
    b.load_state_dict(a.state_dict())
    assert [a.step(mu) for mu in (0.9, 0.95)] == [b.step(mu) for mu in (0.9, 0.95)]
    assert a.lam == b.lam == a.lambda_at(a.sparsity)


def test_preset_from_yaml_file(tmp_path):
    path = tmp_path / "fitted.yaml"
    path.write_text("A: 0.4\nB: 0.85\nC: 30\nD: -0.002\n")
    scheduler = AdaptiveScheduler.preset(str(path), final_sparsity=0.99, epochs=160)
    assert (scheduler.A, scheduler.B, scheduler.C, scheduler.D) == (0.4, 0.85, 30.0, -0.002)
    (tmp_path / "bad.yaml").write_text("A: 0.4\n")
    with pytest.raises(ConfigError, match="A, B, C and D"):
        AdaptiveScheduler.preset(str(tmp_path / "bad.yaml"), final_sparsity=0.99, epochs=160)
    with pytest.raises(ConfigError, match="lambda1"):
        AdaptiveScheduler.preset("lambda3", final_sparsity=0.99, epochs=160)
    with pytest.raises(ValueError, match="family"):
        AdaptiveScheduler.preset("lambda1", "transformer", final_sparsity=0.99, epochs=160)


def test_build_cubic_schedule_from_config():
    schedule = build_schedule(SparsityConfig(target=0.9, scheduler={"start_epoch": 1, "end_fraction": 0.5}), 10, 8)
    assert isinstance(schedule, CubicSchedule)
    assert (schedule.start_step, schedule.end_step) == (10, 40)
    assert schedule.sparsity_at(5) == 0.0
    assert schedule.sparsity_at(40) == 0.9
    assert schedule.lam == 0.0


def test_build_constant_schedule():
    schedule = build_schedule(SparsityConfig(target=0.8, scheduler={"type": "constant"}), 10, 8)
    assert isinstance(schedule, ConstantSchedule)
    assert schedule.sparsity_at(0) == 0.8


def test_build_adaptive_schedule_explicit_constants_override_preset():
    scheduler = {"type": "adaptive", "preset": "lambda1", "family": "mobilenet", "A": 0.6, "initial_sparsity": 0.4}
    schedule = build_schedule(SparsityConfig(target=0.95, scheduler=scheduler), 10, 20)
    assert isinstance(schedule, AdaptiveSchedule)
    s = schedule.scheduler
    assert (s.A, s.B, s.C, s.D, s.scale, s.sparsity) == (0.6, 0.8, 20.0, -0.007, 8.0, 0.4)


@pytest.mark.parametrize(
    ("model", "family", "D"),
    [("mobilenet_v1", "mobilenet", -0.007), ("densenet40_24", "densenet", -0.010), ("resnet20", "resnet", -0.010)],
)
def test_run_config_resolves_the_preset_for_its_model_family(model, family, D):
    config = RunConfig(model=model, sparsity={"scheduler": {"type": "adaptive", "preset": "lambda1"}})
    assert config.sparsity is not None
    scheduler = config.sparsity.scheduler
    assert scheduler.family == ModelFamily(family) == ModelFamily.of(model)
    assert (scheduler.A, scheduler.B, scheduler.C, scheduler.D) == (0.5, 0.8, 20.0, D)
    assert RunConfig.model_validate(config.model_dump(mode="json")) == config  # resolved once, stable when re-read


def test_preset_file_is_read_at_config_load(tmp_path):
    path = tmp_path / "fitted.yaml"
    path.write_text("A: 0.4\nB: 0.85\nC: 30\nD: -0.002\n")
    config = validate(RunConfig, {"sparsity": {"scheduler": {"type": "adaptive", "preset": str(path)}}})
    path.unlink()  # the engine no longer needs the file
    assert config.sparsity is not None
    schedule = build_schedule(config.sparsity, 10, 20)
    assert isinstance(schedule, AdaptiveSchedule)
    assert (schedule.scheduler.A, schedule.scheduler.D) == (0.4, -0.002)
    with pytest.raises(ConfigError, match=r"sparsity.scheduler.*neither lambda1 nor lambda2"):
        validate(RunConfig, {"sparsity": {"scheduler": {"type": "adaptive", "preset": str(path)}}})


@pytest.mark.parametrize("value", [".nan", ".inf"])
def test_adaptive_constants_must_be_finite(tmp_path, value):
    """A NaN lambda never raises S_k (formulas §3): such constants are refused at load, from a file or given."""
    path = tmp_path / "fitted.yaml"
    path.write_text(f"A: 0.4\nB: 0.85\nC: 30\nD: {value}\n")
    with pytest.raises(ConfigError, match="A, B, C and D"):
        validate(RunConfig, {"sparsity": {"scheduler": {"type": "adaptive", "preset": str(path)}}})
    constants = {"A": float(value.replace(".", "")), "B": 0.8, "C": 20.0, "D": 0.0}
    with pytest.raises(ConfigError, match=r"sparsity\.scheduler\.A = .*finite"):
        validate(RunConfig, {"sparsity": {"scheduler": {"type": "adaptive", **constants}}})


def test_adaptive_warmup_is_cubic_to_initial_sparsity_then_adaptive():
    config = SparsityConfig(
        target=0.95, scheduler={"type": "adaptive", "preset": "lambda1", "initial_sparsity": 0.6, "warmup_epochs": 2}
    )
    schedule = build_schedule(config, 10, 20)
    assert isinstance(schedule, AdaptiveSchedule)
    assert schedule.sparsity_at(0) == 0.0
    assert schedule.sparsity_at(10) == pytest.approx(0.6 - 0.6 / 8)
    mus = {k: 0.5 + 0.01 * k for k in range(25)}
    for k in range(19):
        schedule.observe(k, mus[k])
    assert schedule.scheduler.sparsity == 0.6  # warm-up only records
    schedule.observe(19, mus[19])  # sets the sparsity of step 20, the first adaptive one
    assert schedule.sparsity_at(20) == pytest.approx(0.6 + 8 * schedule.scheduler.lambda_at(0.6) * 0.01)


def test_adaptive_scheduler_built_with_its_defaults_prunes_and_zero_is_refused():
    """formulas §9: the adaptive schedule cannot leave S = 0 (all masks are all ones, mu never rises). Built for a loop of
    one's own as docs/training.md shows, without an initial_sparsity, it starts where a run config's does (0.5), and 0
    is refused, naming the argument, as the run config refuses it."""
    import torch
    import torch.nn.functional as F

    from tuneprune.sparsity import Sparsifier

    assert AdaptiveScheduler.preset("lambda1", final_sparsity=0.9, epochs=2).sparsity == 0.5
    assert AdaptiveScheduler(0.5, 0.8, 20, -0.01, final_sparsity=0.9, epochs=2).sparsity == 0.5
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    schedule = AdaptiveSchedule(AdaptiveScheduler.preset("lambda1", final_sparsity=0.9, epochs=2))
    sparsifier = Sparsifier(model, schedule)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        sparsifier.before_iteration()
        optimizer.zero_grad()
        F.cross_entropy(model(torch.randn(4, 1, 4, 4)), torch.tensor([0, 1, 2, 0])).backward()
        optimizer.step()
    sparsifier.end_epoch()
    assert sparsifier.metrics()["sparsity"] >= 0.5 - 1 / 152
    for zero in (0.0, -0.1):
        with pytest.raises(ValueError, match=rf"initial_sparsity = {zero}: .*cannot leave S = 0.*allowed: above 0"):
            AdaptiveScheduler.preset("lambda1", final_sparsity=0.9, epochs=2, initial_sparsity=zero)
