"""Config loading, overrides and one-line errors (foundation issue, item 6)."""

from __future__ import annotations

import pytest

from tuneprune.runs import TrialSpec
from tuneprune.shared.config import ConfigError, apply_overrides, load_config, load_yaml, validate
from tuneprune.training import RunConfig


def test_defaults_follow_spec_recipe():
    c = RunConfig()
    assert (c.epochs, c.batch_size, c.lr, c.momentum, c.weight_decay, c.grad_clip) == (160, 128, 0.1, 0.9, 5e-4, 3.0)
    assert c.lr_schedule == "cosine"


def test_overrides_parse_yaml_scalars(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: small_cnn\nepochs: 3\n")
    c = load_config(RunConfig, path, ["epochs=5", "sparsity.target=0.95", "sparsity.operator_p=inf", "grad_clip=null"])
    assert c.epochs == 5
    assert c.sparsity is not None
    assert c.sparsity.target == 0.95
    assert c.grad_clip is None
    assert c.sparsity.operator_p == float("inf")


def test_an_override_sets_its_path_only_where_yaml_aliases_another(tmp_path):
    """A YAML alias (``momentum: *range``) was the anchored mapping itself: ``--set params.lr.high=0.2`` changed the
    range of ``momentum`` too, silently. An alias reads as a copy of its anchor's value."""
    path = tmp_path / "space.yaml"
    path.write_text("params:\n  lr: &range {type: float, low: 0.01, high: 0.3}\n  momentum: *range\n")
    document = apply_overrides(load_yaml(path), ["params.lr.high=0.2"])
    assert document["params"] == {
        "lr": {"type": "float", "low": 0.01, "high": 0.2},
        "momentum": {"type": "float", "low": 0.01, "high": 0.3},
    }


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["epochs=-1"], "epochs = -1"),
        (["bogus=1"], "bogus: unknown key"),
        (["model=resnet1000"], "model = 'resnet1000': unknown model"),
        (["dataset=imagenet"], "dataset = 'imagenet': unknown dataset"),
        (["lr=abc"], "lr = 'abc'"),
        (["sparsity.target=1.0"], "sparsity.target = 1.0"),
    ],
)
def test_bad_values_name_the_field(overrides, expected):
    with pytest.raises(ConfigError) as err:
        load_config(RunConfig, None, overrides)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*YAML syntax error"):
        load_yaml(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_yaml(listing)


def test_override_without_equals_is_refused():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["epochs"])


def test_the_relevance_point_belongs_to_the_trial_spec_not_the_run_config():
    data = {"epochs": 2, "relevance": {"ranking": "mixed", "delta": 0.3, "percentage": 50}}
    spec = validate(TrialSpec, data)
    assert spec.relevance is not None
    assert spec.relevance.percentage == 50
    assert isinstance(spec, RunConfig)
    with pytest.raises(ConfigError, match="relevance: unknown key"):
        validate(RunConfig, data)
