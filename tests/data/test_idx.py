"""MNIST and Fashion-MNIST from IDX files: the reader's checks, both layouts, the real Debian files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from tuneprune.data import check_data_dir, load_dataset
from tuneprune.data.idx import read_idx
from tuneprune.data.splits import IDX_FILES, IDX_SYSTEM_DIR
from tuneprune.shared.config import ConfigError
from tuneprune.training import RunConfig


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x00 0x00 0x08 NDIM, the big-endian dimensions, the values."""
    return (
        bytes([0, 0, 0x08, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.astype(np.uint8).tobytes()
    )


def write_set(folder: Path, n_train: int = 200, n_test: int = 50, gz: bool = True) -> dict[str, np.ndarray]:
    """Four small IDX files (10 classes, images whose mean brightness is their label) in ``folder``."""
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = (labels[:, None, None] * 20 + rng.integers(0, 40, (n, 28, 28))).astype(np.uint8)
        arrays[f"{split}-images-idx3-ubyte"], arrays[f"{split}-labels-idx1-ubyte"] = images, labels
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return arrays


def test_reader_round_trips_raw_and_gz(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(array)))
    assert np.array_equal(read_idx(tmp_path / "a", 3), array)
    assert np.array_equal(read_idx(tmp_path / "a.gz", 3), array)


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        (lambda b: b[:-5], "truncated"),
        (lambda b: b[:6], "truncated IDX header"),
        (lambda b: b + b"\0", "longer than its header says"),
        (lambda b: b"\x08\x03" + b[2:], "not an IDX file"),
        (lambda b: b[:2] + b"\x07" + b[3:], "not an IDX file"),
    ],
    ids=["truncated", "short_header", "trailing", "magic", "type"],
)
def test_bad_file_is_one_line_naming_it(tmp_path, content, expect):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content(idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))))
    with pytest.raises(ConfigError) as err:
        read_idx(path, 3)
    assert str(path) in str(err.value)
    assert expect in str(err.value)
    assert "\n" not in str(err.value)


def test_truncated_gz_is_one_line_naming_it(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(100, dtype=np.uint8)))[:30])
    with pytest.raises(ConfigError, match="truncated") as err:
        read_idx(path, 1)
    assert str(path) in str(err.value)


def test_wrong_number_of_dimensions_is_refused(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8)))
    with pytest.raises(ConfigError, match="3 dimensions, expected 1"):
        read_idx(path, 1)


@pytest.mark.parametrize(
    ("name", "folder", "gz"), [("mnist", "MNIST/raw", False), ("fashion_mnist", "FashionMNIST/raw", True)]
)
def test_torchvision_layout_splits_like_the_other_datasets(tmp_path, name, folder, gz):
    arrays = write_set(tmp_path / folder, gz=gz)
    config = RunConfig(model="small_cnn", dataset=name, data_dir=tmp_path, seed=1, val_fraction=0.1)
    data = load_dataset(config)
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 1, 28)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (180, 20, 50)
    assert sorted(data.y_val.tolist()) == sorted(list(range(10)) * 2)  # stratified
    assert data.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()  # the test set is t10k, in order
    # the same seed gives the same split; another seed another one
    assert load_dataset(config).y_val.tolist() == data.y_val.tolist()
    other = load_dataset(config.model_copy(update={"seed": 2}))
    assert not np.array_equal(other.x_val.numpy(), data.x_val.numpy())
    # normalised by fixed constants: brighter labels stay brighter
    means = [float(data.x_test[data.y_test == c].mean()) for c in range(10)]
    assert means == sorted(means)
    resized = load_dataset(config.model_copy(update={"image_size": 14}))
    assert resized.image_size == 14
    subset = load_dataset(RunConfig(model="small_cnn", dataset=name, data_dir=tmp_path, seed=1, train_samples=50))
    assert len(subset.x_train) == 50
    assert subset.y_train.tolist() == data.y_train[:50].tolist()  # the head of the same split


def test_missing_files_name_the_paths_and_how_to_get_them(tmp_path):
    write_set(tmp_path / "MNIST" / "raw")
    (tmp_path / "MNIST" / "raw" / f"{IDX_FILES[3]}.gz").unlink()
    with pytest.raises(ConfigError) as err:
        check_data_dir("mnist", tmp_path, False)
    text = str(err.value)
    assert f"{tmp_path}/MNIST/raw/{IDX_FILES[3]}[.gz]" in text
    assert "torchvision.datasets.MNIST" in text
    assert "\n" not in text
    with pytest.raises(ConfigError, match="FashionMNIST/raw"):
        check_data_dir("fashion_mnist", tmp_path, False)


@pytest.mark.skipif(
    not IDX_SYSTEM_DIR["fashion_mnist"].is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_debian_fashion_mnist_without_data_dir():
    data = load_dataset(RunConfig(model="small_cnn", dataset="fashion_mnist", val_fraction=0.1))
    assert (len(data.x_train) + len(data.x_val), len(data.x_test)) == (60000, 10000)
    assert data.x_train.shape[1:] == (1, 28, 28)
    assert sorted(set(data.y_test.tolist())) == list(range(10))
    assert abs(float(data.x_train.mean())) < 0.05  # the set's mean and std
    assert abs(float(data.x_train.std()) - 1.0) < 0.05
