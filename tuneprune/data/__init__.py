"""Datasets by name, held in memory as tensors, and a batched tensor loader.

``digits`` (scikit-learn's bundled 8x8 images) is the embedded default and works
offline; ``mnist``/``fashion_mnist`` read IDX files from torchvision's layout under a
directory the user has, or from the system folder of Debian's ``dataset-fashion-mnist``;
``cifar10``/``cifar100`` read torchvision files from a directory the user has;
``synthetic`` makes random tensors for benchmarks.
"""

from tuneprune.data.splits import DATASETS, DatasetSplits, load_dataset, check_data_dir
from tuneprune.data.loader import TensorLoader, augment_batch

__all__ = ["DATASETS", "DatasetSplits", "load_dataset", "check_data_dir", "TensorLoader", "augment_batch"]
