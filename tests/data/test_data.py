"""Datasets and the batched tensor loader (foundation issue, item 3)."""

from __future__ import annotations

import pytest
import torch

from tuneprune.data import TensorLoader, augment_batch, check_data_dir, load_dataset
from tuneprune.shared.config import ConfigError
from tuneprune.training import RunConfig


def test_digits_split_is_stratified_fixed_and_complete():
    data = load_dataset(RunConfig(model="small_cnn", dataset="digits", seed=3))
    sizes = len(data.x_train) + len(data.x_val) + len(data.x_test)
    assert sizes == 1797
    assert data.num_classes == 10
    assert data.x_train.shape[1:] == (1, 8, 8)
    for y in (data.y_train, data.y_val, data.y_test):
        counts = torch.bincount(y, minlength=10).float()
        assert counts.min() / counts.max() > 0.8  # every class present in proportion
    again = load_dataset(RunConfig(model="small_cnn", dataset="digits", seed=3))
    assert torch.equal(again.x_test, data.x_test)
    other = load_dataset(RunConfig(model="small_cnn", dataset="digits", seed=4))
    assert not torch.equal(other.y_test, data.y_test)


def test_digits_upsampled_for_cifar_models():
    data = load_dataset(RunConfig(model="resnet20", dataset="digits"))
    assert data.x_train.shape[1:] == (1, 32, 32)


def test_missing_cifar_dir_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError) as err:
        check_data_dir("cifar10", missing, download=False)
    assert str(missing) in str(err.value)
    assert "cifar-10-batches-py" in str(err.value)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_an_incomplete_cifar_folder_is_one_line_naming_data_dir(tmp_path, name):
    """The folder is there but not its files (an interrupted extraction): no torchvision traceback."""
    folder = tmp_path / {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name]
    folder.mkdir()
    check_data_dir(name, tmp_path, download=False)  # the folder exists
    with pytest.raises(ConfigError, match=rf"^data_dir = '{tmp_path}': {name} in {folder}/ is incomplete or corrupt"):
        load_dataset(RunConfig(dataset=name, data_dir=tmp_path))


def test_synthetic_shapes():
    data = load_dataset(RunConfig(dataset="synthetic", model="resnet20", synthetic_samples=64, synthetic_classes=5))
    assert data.x_train.shape == (64, 3, 32, 32)
    assert int(data.y_train.max()) < 5


def test_classes_and_channels_are_those_of_the_loaded_data():
    """What a search checks its models with before any data are loaded is what the trials load."""
    from tuneprune.data.splits import classes_and_channels

    for config in (
        RunConfig(dataset="digits"),
        RunConfig(dataset="synthetic", synthetic_samples=16, synthetic_classes=5),
    ):
        data = load_dataset(config)
        assert classes_and_channels(config.dataset, config.synthetic_classes) == (data.num_classes, data.in_channels)


def test_augment_is_crop_and_flip_of_each_image():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    out = augment_batch(x, g)
    assert out.shape == x.shape
    for i in range(2):  # each output is a shifted (maybe flipped) window of the padded input
        padded = torch.nn.functional.pad(x[i], (4, 4, 4, 4))
        found = any(
            torch.equal(out[i], cand[:, oy : oy + 32, ox : ox + 32])
            for cand in (padded, padded.flip(2))
            for oy in range(9)
            for ox in range(9)
        )
        assert found


def test_augment_pads_each_channel_with_its_pad_value():
    g = torch.Generator().manual_seed(0)
    x = torch.full((64, 3, 8, 8), 100.0)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = augment_batch(x, g, padding=2, pad_value=fill)
    padding = out != 100.0
    assert padding.any()  # some crops reach into the padding
    for c in range(3):
        assert torch.equal(out[:, c][padding[:, c]].unique(), fill[c : c + 1])


@pytest.mark.parametrize("channels", [1, 3])
def test_an_augmented_batch_has_the_strides_of_a_fresh_batch(channels):
    """A crop of one-channel images laid out as NCHW, not with strides that also read as channels_last (a convolution
    then picks the channels_last kernel alone but not on a pack's stacked batches, which are fresh tensors)."""
    out = augment_batch(torch.randn(4, channels, 8, 8), torch.Generator().manual_seed(0))
    assert out.stride() == torch.empty(out.shape).stride()


def test_pad_value_is_a_pixel_of_zero_normalised():
    """The crop's padding is black, as torchvision pads before normalising (formulas §1.6): digits hold pixels of
    0, whose normalised value is the smallest one."""
    data = load_dataset(RunConfig(dataset="digits", model="small_cnn"))
    assert data.pad_value == (float(data.x_train.min()),)
    loader = TensorLoader(data.x_train, data.y_train, batch_size=64, augment=True, pad_value=data.pad_value)
    xb, _ = next(iter(loader))
    assert float(xb.min()) == data.pad_value[0]


def test_loader_is_deterministic_per_epoch_and_covers_everything():
    x = torch.arange(100, dtype=torch.float32)[:, None, None, None].expand(100, 1, 4, 4).contiguous()
    y = torch.arange(100)
    loader = TensorLoader(x, y, batch_size=32, shuffle=True, seed=1)
    loader.set_epoch(2)
    first = torch.cat([yb for _, yb in loader])
    assert sorted(first.tolist()) == list(range(100))
    assert torch.equal(first, torch.cat([yb for _, yb in loader]))
    loader.set_epoch(3)
    assert not torch.equal(first, torch.cat([yb for _, yb in loader]))


def test_a_download_that_cannot_reach_its_server_is_one_line(tmp_path, monkeypatch):
    """``download: true`` with no network ended in urllib's traceback. The archive's address points at a closed local
    port here, so the test never downloads anything."""
    import torchvision

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    with pytest.raises(ConfigError, match=r"^download: true: cifar10 could not be fetched \(.*\); extract it into "):
        load_dataset(RunConfig(dataset="cifar10", data_dir=tmp_path, download=True))


def test_split_sizes_and_image_size_are_those_of_the_loaded_data():
    """What a search checks its batch sizes with before any data are loaded (the training images of each grid point,
    the images' size) is what the trials load."""
    from tuneprune.data.splits import image_size, train_size

    for config in (
        RunConfig(dataset="digits"),
        RunConfig(dataset="digits", val_fraction=0.37, model="resnet20"),
        RunConfig(dataset="digits", train_samples=500, image_size=12),
        RunConfig(dataset="synthetic", synthetic_samples=40, synthetic_classes=5),
        RunConfig(dataset="fashion_mnist", val_fraction=0.13),
    ):
        data = load_dataset(config)
        assert (train_size(config), image_size(config)) == (len(data.x_train), data.image_size)
    assert train_size(RunConfig(dataset="cifar10", data_dir="unused")) == 45000
