"""Datasets by name, held in memory as tensors, and a batched tensor loader.

``digits`` (scikit-learn's bundled 8x8 images) is the embedded default and works
offline; ``mnist``/``fashion_mnist`` read IDX files from torchvision's layout under a
directory the user has, or from the system folder of Debian's ``dataset-fashion-mnist``;
``cifar10``/``cifar100`` read torchvision files from a directory the user has;
``synthetic`` makes random tensors for benchmarks.
"""

from tuneprune.data.loader import TensorLoader, augment_batch
from tuneprune.data.splits import DATASETS, DatasetSplits, check_data_dir, load_dataset

__all__ = ["DATASETS", "DatasetSplits", "TensorLoader", "augment_batch", "check_data_dir", "load_dataset"]
