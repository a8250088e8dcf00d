"""Data: sources, IDX reader, download with checksums, splits and scaling, augmentation.

Example:
    >>> from tunelab.config import DataConfig
    >>> from tunelab.data import load_data
    >>> bundle = load_data(DataConfig(name="digits"))
    >>> bundle.num_classes, bundle.input_shape
    (10, (1, 8, 8))
"""

from tunelab.data.augment import augment_batch, check_augment
from tunelab.data.bundle import DataBundle
from tunelab.data.catalog import dataset_names, describe
from tunelab.data.download import data_dir, download, verify
from tunelab.data.idx import read_idx
from tunelab.data.sources import DATASETS
from tunelab.data.splits import load_data

__all__ = [
    "DataBundle", "load_data", "DATASETS", "read_idx", "download", "verify", "data_dir",
    "augment_batch", "check_augment", "describe", "dataset_names",
]
