"""Gradient-scaling policies and the alpha rule (formulas §2)."""

import math

import pytest
import torch
import yaml

from tuneprune.shared.config import ConfigError, validate
from tuneprune.sparsity import (
    FeatherTheta,
    LogDensityTheta,
    SparsityConfig,
    ThetaConfig,
    alpha_for_target,
    alpha_from_rule_file,
    build_theta_policy,
    feather_theta,
    log_density_theta,
    resolve_alpha,
)


@pytest.mark.parametrize(
    ("target", "alpha"),
    [(0.95, 0.09), (0.98, 0.12), (0.99, 0.13), (0.995, 0.14), (0.998, 0.15), (0.90, 0.0), (0.5, 0.0), (0.0, 0.0)],
)
def test_alpha_reference_values(target, alpha):
    assert alpha_for_target(target) == alpha


@pytest.mark.parametrize("target", [0.91, 0.93, 0.96, 0.97, 0.985])
def test_alpha_rule_on_other_targets(target):
    assert alpha_for_target(target) == round(0.026 * math.tan(23.09 * target + 22.08) + 0.093, 2)


def test_alpha_from_fitted_rule_file(tmp_path):
    path = tmp_path / "rule.yaml"
    path.write_text("c1: 0.026\nc2: 23.09\nc3: 22.08\nc4: 0.093\n")
    for target in (0.5, 0.9, 0.95, 0.99):
        assert alpha_from_rule_file(path, target) == alpha_for_target(target)
    path.write_text("c1: 0.01\nc2: 1.0\nc3: 0.0\nc4: 0.2\n")
    assert alpha_from_rule_file(path, 0.95) == round(0.01 * math.tan(0.95) + 0.2, 2)
    assert resolve_alpha(f"fitted:{path}", 0.95) == alpha_from_rule_file(path, 0.95)
    path.write_text("c1: 0.01\nc2: 1.0\n")
    with pytest.raises(ConfigError, match="c1, c2, c3 and c4"):
        alpha_from_rule_file(path, 0.95)


@pytest.mark.parametrize("value", [".nan", ".inf"])
def test_a_fitted_rule_needs_finite_coefficients(tmp_path, value):
    """A NaN c_i made alpha 0 (max(0, nan)), an infinite one alpha inf (NaN theta at density 1): refused at load."""
    path = tmp_path / "rule.yaml"
    path.write_text(f"c1: {value}\nc2: 23.09\nc3: 22.08\nc4: 0.093\n")
    with pytest.raises(ConfigError, match="finite numbers c1, c2, c3 and c4"):
        resolve_alpha(f"fitted:{path}", 0.99)


def _rule_with_poles(path, lower, upper, **recorded):
    """A rule file of the tangent branch between the poles ``lower < upper`` (formulas §10.3), plus ``recorded`` keys."""
    c2 = math.pi / (upper - lower)
    path.write_text(yaml.safe_dump({"c1": 0.01, "c2": c2, "c3": math.pi / 2 - c2 * upper, "c4": 0.05, **recorded}))
    return f"fitted:{path}"


def test_a_fitted_rule_refuses_a_target_past_the_range_it_covers(tmp_path):
    """Past its upper pole the rule gave a huge alpha (or 0 once clipped), past its fitted range plus its pole margin
    an alpha nothing supports: such a target is refused at load, naming the target, the rule and its range."""
    rule = _rule_with_poles(tmp_path / "pole.yaml", 0.85, 0.97)
    assert 0 < resolve_alpha(rule, 0.96) < 1
    with pytest.raises(ConfigError, match=r"sparsity.target = 0.98: .*covers only targets below 0.97, its upper pole"):
        validate(SparsityConfig, {"target": 0.98, "theta": {"policy": "log_density", "alpha": rule}})
    fitted = _rule_with_poles(tmp_path / "fit.yaml", 0.85, 1.05, fitted_range=[0.9, 0.95], pole_margin=0.005)
    assert resolve_alpha(fitted, 0.955) == round(
        0.01 * math.tan(math.pi / 0.2 * (0.955 - 1.05) + math.pi / 2) + 0.05, 2
    )
    with pytest.raises(
        ConfigError,
        match=r"theta.alpha = 'fitted:.*fit.yaml': sparsity.target = 0.96: .*up to 0.955, the range 0.9..0.95 it",
    ):
        validate(SparsityConfig, {"target": 0.96, "theta": {"policy": "log_density", "alpha": fitted}})


def test_the_published_rule_as_a_file_covers_every_target_auto_does(tmp_path):
    """Its upper pole is 1.0166: a rule file of the published constants accepts every target below 1, as 'auto'."""
    path = tmp_path / "rule.yaml"
    path.write_text("c1: 0.026\nc2: 23.09\nc3: 22.08\nc4: 0.093\n")
    for target in (0.0, 0.9, 0.95, 0.99, 0.998, 0.9999):
        assert resolve_alpha(f"fitted:{path}", target) == resolve_alpha("auto", target)


def test_a_target_past_a_fitted_rule_exits_2_in_one_line(tmp_path, capsys):
    from tuneprune.cli import main

    rule = _rule_with_poles(tmp_path / "pole.yaml", 0.85, 0.97)
    argv = ["train", "--set", "sparsity.theta.policy=log_density", "--set", f"sparsity.theta.alpha={rule}"]
    assert main([*argv, "--set", "sparsity.target=0.99", "--set", "epochs=1", "--no-progress"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "theta.alpha" in error
    assert "sparsity.target = 0.99: the rule" in error
    assert "covers only targets below 0.97" in error


def test_an_alpha_in_exponent_notation_is_a_number():
    """YAML 1.1 (PyYAML) reads ``1e-2`` as a string: ``alpha: 1e-2`` or ``--set sparsity.theta.alpha=1e-2`` is 0.01."""
    config = validate(SparsityConfig, yaml.safe_load("theta: {policy: log_density, alpha: 1e-2}"))
    assert config.theta.alpha == 0.01
    with pytest.raises(ConfigError, match=r"theta.alpha = 'nan': must be a finite number >= 0"):
        validate(SparsityConfig, {"theta": {"alpha": "nan"}})


def test_resolve_alpha():
    assert resolve_alpha("auto", 0.98) == 0.12
    assert resolve_alpha(0.3, 0.98) == 0.3


def test_feather_rule():
    assert feather_theta(0.9) == 1.0
    assert feather_theta(0.95) == 1.0
    assert feather_theta(0.96) == 0.5
    assert feather_theta(0.99) == 0.5


def test_log_density_formula_and_clip():
    densities = torch.tensor([1.0, 0.5, 0.1, 0.01, 0.0])
    alpha = 0.13
    expected = [min(1.0, max(0.2, 1 + alpha * math.log(d))) if d > 0 else 0.2 for d in densities.tolist()]
    torch.testing.assert_close(log_density_theta(densities, alpha, theta_min=0.2), torch.tensor(expected))
    assert log_density_theta(densities, 0.0).tolist() == [1.0] * 5
    assert log_density_theta(torch.tensor([1e-9]), 1.0).item() == 0.0  # clipped at theta_min = 0


def test_policies_per_layer():
    densities = torch.tensor([0.5, 0.05, 0.2])
    assert build_theta_policy(ThetaConfig(policy="constant", value=0.3), 0.9).layer_thetas(densities) == 0.3
    assert build_theta_policy(ThetaConfig(policy="feather"), 0.99).layer_thetas(densities) == 0.5
    assert FeatherTheta(0.9).layer_thetas(densities) == 1.0
    per_layer = build_theta_policy(ThetaConfig(policy="log_density", mode="layer", alpha=0.1), 0.9).layer_thetas(
        densities
    )
    assert isinstance(per_layer, torch.Tensor)
    torch.testing.assert_close(per_layer, 1 + 0.1 * torch.log(densities))
    shared = LogDensityTheta(0.1, mode="global").layer_thetas(densities)
    torch.testing.assert_close(shared, per_layer.mean().expand(3))  # unweighted mean of theta_l
    torch.testing.assert_close(
        LogDensityTheta(2.0, theta_min=0.2, mode="layer").layer_thetas(densities)[1], torch.tensor(0.2)
    )


def test_auto_alpha_is_resolved_at_config_load_by_the_target():
    assert SparsityConfig(target=0.98, theta={"policy": "log_density"}).theta.alpha == 0.12
    assert SparsityConfig(target=0.9, theta={"policy": "log_density"}).theta.alpha == 0.0
    assert SparsityConfig(target=0.98, theta={"policy": "feather"}).theta.alpha == "auto"  # unused, left as written
    with pytest.raises(ValueError, match="resolved by SparsityConfig"):
        build_theta_policy(ThetaConfig(policy="log_density"), 0.98)


def test_fitted_alpha_is_read_at_config_load(tmp_path):
    path = tmp_path / "rule.yaml"
    path.write_text("c1: 0.026\nc2: 23.09\nc3: 22.08\nc4: 0.093\n")
    config = SparsityConfig(target=0.98, theta={"policy": "log_density", "alpha": f"fitted:{path}"})
    assert config.theta.alpha == 0.12
    with pytest.raises(ConfigError, match=r"theta.alpha = 'fitted:.*file not found"):
        validate(
            SparsityConfig,
            {"target": 0.98, "theta": {"policy": "log_density", "alpha": f"fitted:{tmp_path / 'none.yaml'}"}},
        )
