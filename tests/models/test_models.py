"""Model zoo (formulas §1.7): parameter counts, forward shapes, registry errors."""

from __future__ import annotations

import pytest
import torch

from tuneprune.models import MODELS, create_model
from tuneprune.models.resnet import cifar_resnet

# name: (num_classes, expected parameters at in_channels=3); checked to within 3%.
EXPECTED_PARAMS: dict[str, tuple[int, float]] = {
    "small_cnn": (10, 94_762),
    "resnet20": (10, 0.27e6),
    "resnet20x2": (100, 1.09e6),  # Feather's "ResNet-20 (1.096M Params)"
    "resnet32": (10, 0.46e6),
    "resnet56": (10, 0.85e6),
    "resnet18": (10, 11.17e6),
    "resnet50": (10, 23.5e6),
    "mobilenet_v1": (100, 3.3e6),
    "densenet40_24": (100, 0.71e6),
    "vgg16": (10, 14.7e6),
    "vgg19": (10, 20.0e6),
}

RESNETS = ["resnet20", "resnet20x2", "resnet32", "resnet56", "resnet18", "resnet50"]


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def logits(model: torch.nn.Module, in_channels: int, size: int) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(2, in_channels, size, size))


def test_every_registered_model_has_an_expected_count() -> None:
    assert set(EXPECTED_PARAMS) == set(MODELS)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_param_count_and_forward_rgb(name: str) -> None:
    num_classes, expected = EXPECTED_PARAMS[name]
    model = create_model(name, num_classes)
    assert count_params(model) == pytest.approx(expected, rel=0.03)
    assert logits(model, 3, 32).shape == (2, num_classes)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_grayscale(name: str) -> None:
    model = create_model(name, num_classes=7, in_channels=1)
    assert logits(model, 1, 32).shape == (2, 7)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_runs_on_28x28_grayscale(name: str) -> None:
    """MNIST and Fashion-MNIST images: one channel, 28x28 (VGG's pools round up to reach 1x1)."""
    model = create_model(name, num_classes=10, in_channels=1)
    assert logits(model, 1, 28).shape == (2, 10)


@pytest.mark.parametrize("name", RESNETS)
def test_resnets_accept_8x8_inputs(name: str) -> None:
    model = create_model(name, num_classes=10, in_channels=1)
    assert logits(model, 1, 8).shape == (2, 10)


def test_convs_have_no_bias() -> None:
    """Every conv in the zoo feeds a BatchNorm, so none carries a bias."""
    for name in MODELS:
        for module in create_model(name, 10).modules():
            if isinstance(module, torch.nn.Conv2d):
                assert module.bias is None, name


def test_unknown_model_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="unknown model 'nope'") as excinfo:
        create_model("nope", 10)
    for name in MODELS:
        assert name in str(excinfo.value)


@pytest.mark.parametrize("depth", [19, 4])
def test_cifar_resnet_rejects_depths_not_6n_plus_2(depth: int) -> None:
    with pytest.raises(ValueError, match="6n \\+ 2"):
        cifar_resnet(10, 3, depth=depth)
