"""Every shipped search space validates, on its own dataset and overridden to digits."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneprune.evolution.runner import prepare_evolution
from tuneprune.evolution.space import RateInterval
from tuneprune.search import prepare_search
from tuneprune.shared.config import ConfigError

ALL = sorted((Path(__file__).resolve().parents[2] / "search_spaces").glob("*.yaml"))
EVOLUTIONS = [p for p in ALL if p.stem.startswith("evolve_")]
SPACES = [p for p in ALL if p not in EVOLUTIONS]
DIGITS = ["base.dataset=digits", "base.epochs=1", "resources.gpu=0", "resources.cpu=1"]


def test_the_required_spaces_ship():
    names = {p.stem for p in SPACES}
    assert {"digits_demo", "feather_alpha", "adaptive_scheduler", "weight_drop"} <= names


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_space_validates_on_digits(path, tmp_path):
    prepared = prepare_search(
        path,
        DIGITS,
        tracking_uri=f"sqlite:///{tmp_path}/m.db",
        storage_url=f"sqlite:///{tmp_path}/o.db",
        results_root=tmp_path,
    )
    for point in prepared.space.grid_points():
        config = prepared.space.resolve(point, {})
        assert config.dataset == "digits"


@pytest.mark.parametrize("path", EVOLUTIONS, ids=lambda p: p.stem)
def test_evolution_space_validates_on_digits(path, tmp_path):
    prepared = prepare_evolution(
        path,
        ["train.dataset=digits", "train.epochs=1", "resources.gpu=0", "resources.cpu=1"],
        tracking_uri=f"sqlite:///{tmp_path}/m.db",
        results_root=tmp_path,
    )
    assert prepared.space.train.dataset == "digits"
    rate = prepared.space.variables.rate
    assert (rate.low, rate.high) == (0.01, 0.99)  # formulas §5: the pruning rate r from 0.01 to 0.99


def test_rate_bounds_default_to_spec():
    rate = RateInterval()
    assert (rate.low, rate.high) == (0.01, 0.99)  # formulas §5


@pytest.mark.parametrize("path", [p for p in SPACES if "cifar" in p.read_text()], ids=lambda p: p.stem)
def test_cifar_space_without_data_names_the_directory(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"data_dir = 'data'.*cifar-100-python"):
        prepare_search(
            path,
            tracking_uri=f"sqlite:///{tmp_path}/m.db",
            storage_url=f"sqlite:///{tmp_path}/o.db",
            results_root=tmp_path,
        )


def test_dotted_grid_keys_can_be_overridden(tmp_path):
    path = Path(__file__).resolve().parents[2] / "search_spaces" / "feather_alpha.yaml"
    prepared = prepare_search(
        path,
        [*DIGITS, "grid.model=[resnet20]", "grid.sparsity.target=[0.95,0.99]"],
        tracking_uri=f"sqlite:///{tmp_path}/m.db", storage_url=f"sqlite:///{tmp_path}/o.db", results_root=tmp_path,
    )  # fmt: skip
    assert prepared.space.grid_points() == [
        {"model": "resnet20", "sparsity.target": 0.95},
        {"model": "resnet20", "sparsity.target": 0.99},
    ]


def test_a_space_document_is_left_as_the_caller_gave_it(tmp_path):
    """``prepare_search(document=..., num_samples=...)`` searches a changed copy: the caller's space is not rewritten."""
    document = {
        "name": "doc",
        "base": {"model": "small_cnn", "dataset": "digits"},
        "params": {"lr": {"type": "float", "low": 0.01, "high": 0.1}},
        "objectives": {"val_acc": "max"},
        "num_samples": 2,
    }
    given = {**document}
    prepared = prepare_search(
        "unused.yaml", document=document, num_samples=5,
        tracking_uri=f"sqlite:///{tmp_path}/m.db", storage_url=f"sqlite:///{tmp_path}/o.db", results_root=tmp_path,
    )  # fmt: skip
    assert prepared.space.num_samples == 5
    assert document == given
