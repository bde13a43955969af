"""Load a dataset by name into train/validation/test tensors."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.error import URLError

import numpy as np
import torch
import torch.nn.functional as F

from tuneprune.shared.config import ConfigError

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "synthetic")
# Classes per dataset (synthetic: its synthetic_classes), and image channels: CIFAR and synthetic RGB, the others grey.
CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100}
CHANNELS = {"digits": 1, "mnist": 1, "fashion_mnist": 1, "cifar10": 3, "cifar100": 3, "synthetic": 3}


def classes_and_channels(dataset: str, synthetic_classes: int) -> tuple[int, int]:
    """The classes and the image channels of ``dataset`` (what :func:`~tuneprune.models.create_model` takes), known
    without loading it."""
    return synthetic_classes if dataset == "synthetic" else CLASSES[dataset], CHANNELS[dataset]


# Images of each dataset's training file(s), before its splits (digits: the whole set, its test split cut from it).
TRAIN_IMAGES = {"digits": 1797, "mnist": 60000, "fashion_mnist": 60000, "cifar10": 50000, "cifar100": 50000}
DIGITS_TEST_FRACTION = 0.2


def held_out(fraction: float, n: int) -> int:
    """The images a split of ``fraction`` holds out of ``n`` (scikit-learn's ``train_test_split``: rounded up)."""
    return math.ceil(fraction * n)


def train_size(config) -> int:
    """The training images of a validated :class:`~tuneprune.training.config.RunConfig`, known without loading them:
    what :func:`load_dataset` gives, by the same splits."""
    n = config.synthetic_samples if config.dataset == "synthetic" else TRAIN_IMAGES[config.dataset]
    if config.dataset == "digits":
        n -= held_out(DIGITS_TEST_FRACTION, n)
    if config.dataset != "synthetic":
        n -= held_out(config.val_fraction, n)
    return min(n, config.train_samples or n)


def image_size(config) -> int:
    """The side of the images :func:`load_dataset` gives for a validated run config: its ``image_size``, else the
    dataset's native one (digits at 32 px but for ``small_cnn``), else 32."""
    native = {"digits": 8 if config.model == "small_cnn" else 32, "mnist": 28, "fashion_mnist": 28}
    return config.image_size or native.get(config.dataset, 32)


CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}
CIFAR_FOLDER = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}

# MNIST-like sets (28x28, one channel): torchvision's folder under data_dir, the system-wide
# folder read without a data_dir (Debian's dataset-fashion-mnist package), mean and std of the training images.
IDX_FOLDER = {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw"}
IDX_SYSTEM_DIR = {
    "mnist": Path("/usr/share/datasets/mnist"),
    "fashion_mnist": Path("/usr/share/datasets/fashion-mnist"),
}
IDX_MEAN_STD = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530)}
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IDX_HOW = {
    "mnist": "get the four MNIST IDX files (torchvision.datasets.MNIST(DATA_DIR, download=True) puts them there)",
    "fashion_mnist": "apt-get install dataset-fashion-mnist, or torchvision.datasets.FashionMNIST(DATA_DIR, download=True)",
}


@dataclass
class DatasetSplits:
    """Normalised float tensors (N, C, H, W) and integer labels for each split; ``pad_value`` per channel is a pixel
    of 0 before normalisation, ``-mean / std``: what a random crop's padding holds (formulas §1.6)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    pad_value: tuple[float, ...] = (0.0,)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def to(self, device: torch.device | str) -> DatasetSplits:
        moved = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        return replace(self, **moved)


def _stratified_split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int):
    from sklearn.model_selection import train_test_split  # here: the CLI's input checks must not wait for sklearn

    return train_test_split(x, y, test_size=fraction, stratify=y, random_state=seed)


def _validation_split(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int):
    """The stratified train/validation split of ``(x, y)``; a ``val_fraction`` too small to hold one image of
    every class is a one-line :class:`ConfigError` naming the smallest one allowed."""
    classes, held = len(np.unique(y)), held_out(val_fraction, len(y))
    if held < classes:
        smallest = math.ceil(classes / len(y) * 1e4) / 1e4
        raise ConfigError(
            f"val_fraction = {val_fraction}: holds out {held} of {len(y)} training images, fewer than the "
            f"{classes} classes; allowed: at least {smallest} (and below 0.5)"
        )
    return _stratified_split(x, y, val_fraction, seed)


def _splits(
    name: str, image_size: int, mean: np.ndarray, std: np.ndarray, *pairs: tuple[np.ndarray, np.ndarray]
) -> DatasetSplits:
    """The (images, labels) ``pairs`` of the train, validation and test splits as :class:`DatasetSplits`: images
    normalised by ``mean`` and ``std`` (per channel, or one for all) and resized to ``image_size``."""
    tensors: dict[str, torch.Tensor] = {}
    for split, (x, y) in zip(("train", "val", "test"), pairs, strict=True):
        xt = torch.as_tensor((x - mean) / std, dtype=torch.float32)
        if image_size != xt.shape[-1]:
            xt = F.interpolate(xt, size=(image_size, image_size), mode="bilinear", align_corners=False)
        tensors[f"x_{split}"], tensors[f"y_{split}"] = xt, torch.as_tensor(y, dtype=torch.long)
    pad_value = tuple(float(v) for v in np.ravel(-mean / std))
    return DatasetSplits(name=name, num_classes=CLASSES[name], pad_value=pad_value, **tensors)


def _digits(image_size: int, val_fraction: float, seed: int) -> DatasetSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None] / 16.0  # (1797, 1, 8, 8) in [0, 1]
    y = bunch.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = _stratified_split(x, y, DIGITS_TEST_FRACTION, seed)
    x_train, x_val, y_train, y_val = _validation_split(x_rest, y_rest, val_fraction, seed)
    mean, std = np.float32(x_train.mean()), np.float32(x_train.std())
    return _splits("digits", image_size, mean, std, (x_train, y_train), (x_val, y_val), (x_test, y_test))


def idx_files(name: str, data_dir: Path | None) -> list[Path]:
    """The four IDX files of ``name`` (``IDX_FILES``, raw or ``.gz``) in torchvision's layout under ``data_dir``, else
    in ``IDX_SYSTEM_DIR``; a missing one raises one line naming the folder tried and how to get the files."""
    folder = Path(data_dir) / IDX_FOLDER[name] if data_dir is not None else IDX_SYSTEM_DIR[name]
    found = []
    for stem in IDX_FILES:
        candidates = [folder / stem, folder / f"{stem}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            where = f"data_dir = '{data_dir}'" if data_dir is not None else "data_dir not set (system folder)"
            how = IDX_HOW[name].replace("DATA_DIR", str(data_dir or "DATA_DIR"))
            raise ConfigError(f"dataset = {name!r}: not found, tried {candidates[0]}[.gz] ({where}); {how}")
        found.append(path)
    return found


def check_data_dir(name: str, data_dir: Path | None, download: bool) -> None:
    """Raise a one-line :class:`ConfigError` when CIFAR or IDX files are not where the config says."""
    if name in IDX_FOLDER:
        idx_files(name, data_dir)
    elif name.startswith("cifar"):
        if data_dir is None:
            raise ConfigError(f"data_dir: required for {name}")
        folder = Path(data_dir) / CIFAR_FOLDER[name]
        if not download and not folder.is_dir():
            raise ConfigError(
                f"data_dir = '{data_dir}': {name} not found, expected {folder}/ (torchvision layout; "
                f"set download: true to fetch it)"
            )


def _cifar(name: str, data_dir: Path, download: bool, val_fraction: float, seed: int) -> DatasetSplits:
    import torchvision

    check_data_dir(name, data_dir, download)
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    folder = data_dir / CIFAR_FOLDER[name]
    try:
        train = cls(str(data_dir), train=True, download=download)
        test = cls(str(data_dir), train=False, download=download)
    except URLError as err:  # download: true without a network, or the server out of reach
        raise ConfigError(
            f"download: true: {name} could not be fetched ({err.reason}); extract it into {folder}/ and set download: false"
        ) from None
    except RuntimeError:  # torchvision's check of the files' checksums
        raise ConfigError(
            f"data_dir = '{data_dir}': {name} in {folder}/ is incomplete or corrupt "
            "(torchvision's check of its files failed); extract the archive again, or set download: true"
        ) from None
    mean, std = (np.array(v[name], dtype=np.float32)[None, :, None, None] for v in (CIFAR_MEAN, CIFAR_STD))

    def prep(data: np.ndarray) -> np.ndarray:
        return data.transpose(0, 3, 1, 2).astype(np.float32) / 255.0

    x_train, x_val, y_train, y_val = _validation_split(train.data, np.asarray(train.targets), val_fraction, seed)
    return _splits(
        name, 32, mean, std, (prep(x_train), y_train), (prep(x_val), y_val), (prep(test.data), np.asarray(test.targets))
    )


def _idx(name: str, data_dir: Path | None, image_size: int, val_fraction: float, seed: int) -> DatasetSplits:
    """MNIST or Fashion-MNIST: a stratified validation split of the training set by ``seed`` (as for
    every dataset), pixels scaled to [0, 1] and normalised by the set's fixed mean and std (as CIFAR)."""
    from tuneprune.data.idx import read_idx

    train_x, train_y, test_x, test_y = (
        read_idx(p, ndim) for p, ndim in zip(idx_files(name, data_dir), (3, 1, 3, 1), strict=True)
    )
    for images, labels, split in ((train_x, train_y, "train"), (test_x, test_y, "t10k")):
        if len(images) != len(labels):
            raise ConfigError(f"{name}: {split} images ({len(images)}) and labels ({len(labels)}) differ in number")
    mean, std = (np.float32(v) for v in IDX_MEAN_STD[name])
    x_train, x_val, y_train, y_val = _validation_split(train_x, train_y.astype(np.int64), val_fraction, seed)

    pairs = ((x_train, y_train), (x_val, y_val), (test_x, test_y))
    return _splits(name, image_size, mean, std, *((x[:, None].astype(np.float32) / 255.0, y) for x, y in pairs))


def _synthetic(samples: int, classes: int, image_size: int, seed: int) -> DatasetSplits:
    g = torch.Generator().manual_seed(seed)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, CHANNELS["synthetic"], image_size, image_size, generator=g)
        return x, torch.randint(0, classes, (n,), generator=g)

    n_eval = max(samples // 5, classes)
    return DatasetSplits("synthetic", *draw(samples), *draw(n_eval), *draw(n_eval), num_classes=classes)


def load_dataset(config) -> DatasetSplits:
    """Load the dataset a validated :class:`~tuneprune.training.config.RunConfig` names (on the CPU), its training
    split cut to ``train_samples`` images when set (the split is shuffled by ``seed``: its head is a random subset).

    The splits last loaded are kept in the process and shared (never modified in place by
    tuneprune): the trials a reused Ray worker runs one after another read them once.
    """
    data = _load(
        config.dataset, config.data_dir, config.download, image_size(config), config.val_fraction, config.seed,
        config.synthetic_samples, config.synthetic_classes,
    )  # fmt: skip
    train = slice(None, config.train_samples)
    return replace(data, x_train=data.x_train[train], y_train=data.y_train[train])


@functools.lru_cache(maxsize=1)
def _load(
    name: str,
    data_dir: Path | None,
    download: bool,
    image_size: int,
    val_fraction: float,
    seed: int,
    synthetic_samples: int,
    synthetic_classes: int,
) -> DatasetSplits:
    if name == "digits":
        return _digits(image_size, val_fraction, seed)
    if name == "synthetic":
        return _synthetic(synthetic_samples, synthetic_classes, image_size, seed)
    if name in IDX_FOLDER:
        return _idx(name, data_dir, image_size, val_fraction, seed)
    return _cifar(name, Path(data_dir or "."), download, val_fraction, seed)  # RunConfig requires data_dir
