"""What each dataset is, for ``tunelab datasets list`` and ``tunelab datasets info``.

Static facts (sizes as shipped, shape, classes, where it comes from, licence), plus the
state of the files on disk for the downloadable sets. Nothing here loads a dataset.

Example:
    >>> from tunelab.data.catalog import dataset_names, describe
    >>> "mnist" in dataset_names()
    True
    >>> describe("digits")["sizes"]
    {'train': 1797, 'test': None}
"""

from __future__ import annotations

import os
from typing import Any

from tunelab.data.download import FILES, data_dir, verify
from tunelab.data.sources import DATASETS

__all__ = ["INFO", "describe", "dataset_names", "flippable_names"]

_MNIST_LIKE = dict(sizes={"train": 60000, "test": 10000}, input_shape=(1, 28, 28),
                   num_classes=10, is_image=True)
INFO: dict[str, dict[str, Any]] = {
    "digits": dict(
        sizes={"train": 1797, "test": None}, input_shape=(1, 8, 8), num_classes=10,
        is_image=True, flippable=False,
        source="UCI optical recognition of handwritten digits, bundled with scikit-learn "
               "(sklearn.datasets.load_digits); pixels 0..16",
        license="CC BY 4.0 (UCI Machine Learning Repository); creator E. Alpaydin"),
    "mnist": dict(
        **_MNIST_LIKE, flippable=False,
        source="MNIST handwritten digits (LeCun, Cortes, Burges), original IDX .gz files",
        license="commonly stated CC BY-SA 3.0; cite LeCun, Cortes and Burges"),
    "fashion-mnist": dict(
        **_MNIST_LIKE, flippable=True,
        source="Fashion-MNIST Zalando article images, original IDX .gz files",
        license="MIT, Copyright (c) 2017 Zalando SE; cite Xiao, Rasul, Vollgraf, "
                "arXiv:1708.07747"),
    "mnist1d": dict(
        sizes={"train": 4000, "test": 1000}, input_shape=(40,), num_classes=10,
        is_image=False, flippable=False,
        source="MNIST-1D, generated offline by mnist1d.data.make_dataset (default args, "
               "seed 42)",
        license="mnist1d package: Apache-2.0 (Greydanus, 2020)"),
    "csv": dict(
        sizes=None, input_shape=None, num_classes=None, is_image=False, flippable=False,
        source="your csv file (data.path) with a header row; data.target is the label column",
        license="yours"),
    "npz": dict(
        sizes=None, input_shape=None, num_classes=None, is_image=None, flippable=False,
        source="your .npz file (data.path) with arrays x, y and optionally x_test, y_test",
        license="yours"),
    "images": dict(
        sizes=None, input_shape=None, num_classes=None, is_image=True, flippable=False,
        source="your folder (data.path) of train/<class>/ image files (optional test/<class>/), "
               "or <class>/ folders; resized to data.image_size, gray or RGB per data.color",
        license="yours"),
}


def dataset_names() -> list[str]:
    """Sorted names accepted by ``data.name``.

    Example:
        >>> dataset_names()[:2]
        ['csv', 'digits']
    """
    return DATASETS.names()


def flippable_names() -> list[str]:
    """Sorted names of the datasets whose classes survive a horizontal flip."""
    return sorted(n for n, info in INFO.items() if info.get("flippable"))


def describe(name: str, dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Facts about dataset ``name``; for downloadable sets also the status of each file.

    Raises ConfigError listing the choices when ``name`` is not a dataset.

    Example:
        >>> d = describe("mnist", dir="/nonexistent")
        >>> d["num_classes"], d["files"]["train-labels-idx1-ubyte.gz"]
        (10, 'missing')
    """
    loader = DATASETS.get(name)  # ConfigError with the choices for an unknown name
    doc = (loader.__doc__ or "").strip().splitlines()
    info = INFO.get(name, {"source": doc[0] if doc else "registered by user code"})
    out: dict[str, Any] = {"name": name, **info}
    if name in FILES:
        root = data_dir(dir)
        out["dir"] = str(root / name)
        out["files"] = verify(name, root)
    return out
