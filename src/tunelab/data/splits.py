"""From a source to a DataBundle: train / validation / test split, subsample, scaling.

The split is a permutation from ``numpy.random.default_rng(data.split_seed)``: the test
part is carved first when the source has no test set (``data.test_fraction``), then the
validation part (``data.val_fraction``) from what is left; ``data.train_size`` then keeps
a subset of the training part, so validation and test do not move. Scaling statistics are
fitted on the training part only.

Example:
    >>> from tunelab.config import DataConfig
    >>> from tunelab.data.splits import load_data
    >>> b = load_data(DataConfig(name="digits", val_fraction=0.1, test_fraction=0.2))
    >>> b.sizes(), b.input_shape
    ({'train': 1294, 'val': 144, 'test': 359}, (1, 8, 8))
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
import torch

from tunelab.config import DataConfig
from tunelab.data.bundle import DataBundle
from tunelab.data.sources import DATASETS, RawData
from tunelab.errors import ConfigError

__all__ = ["load_data", "split_indices", "fit_scaling", "apply_scaling"]


def _count(n: int, fraction: float, key: str) -> int:
    """round(n * fraction), which must leave at least one example on each side."""
    k = int(round(n * fraction))
    if not 0 < k < n:
        raise ConfigError(f"{key}={fraction} takes {k} of {n} examples; choose a fraction "
                          f"that leaves at least one example on each side")
    return k


def split_indices(n: int, has_test: bool, cfg: DataConfig
                  ) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Sorted indices (train, val, test or None) into a source's n training examples.

    Example:
        >>> tr, va, te = split_indices(100, False, DataConfig(val_fraction=0.1, test_fraction=0.2))
        >>> len(tr), len(va), len(te)
        (72, 8, 20)
    """
    rest, test = np.random.default_rng(cfg.split_seed).permutation(n), None
    if not has_test:
        n_test = _count(n, cfg.test_fraction, "data.test_fraction")
        test, rest = rest[:n_test], rest[n_test:]
    n_val = _count(len(rest), cfg.val_fraction, "data.val_fraction") if cfg.val_fraction > 0 else 0  # 0: none
    val, train = rest[:n_val], rest[n_val:]
    if cfg.train_size is not None:
        if cfg.train_size > len(train):
            raise ConfigError(f"data.train_size={cfg.train_size} exceeds the {len(train)} "
                              f"training examples left after the splits; "
                              f"choose at most {len(train)}")
        train = train[:cfg.train_size]  # a random subset: `rest` is a permutation
    return np.sort(train), np.sort(val), None if test is None else np.sort(test)


def fit_scaling(x_train: np.ndarray, raw: RawData, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) fitted on the training inputs: scaled x = (x - shift) / scale.

    'unit': images are divided by the source's pixel maximum, vectors are min-max scaled
    per feature; 'standardize': z-score per feature (each pixel of an image is a feature);
    'none': identity. A constant feature gets scale 1.

    Example:
        >>> x = np.array([[0.0, 5.0], [2.0, 5.0]], dtype=np.float32)
        >>> fit_scaling(x, RawData(x, np.zeros(2, np.int64), None, None, 1), "standardize")[1]
        array([1., 1.], dtype=float32)
    """
    if mode == "none" or (mode == "unit" and raw.pixel_max is not None):
        scale = 1.0 if mode == "none" else raw.pixel_max
        return np.zeros(1, np.float32), np.full(1, scale, np.float32)
    if mode == "unit":
        lo = x_train.min(axis=0)
        shift, scale = lo.astype(np.float64), (x_train.max(axis=0) - lo).astype(np.float64)
    elif mode == "standardize":
        shift, scale = x_train.mean(axis=0, dtype=np.float64), x_train.std(axis=0, dtype=np.float64)
    else:
        raise ConfigError(f"data.scaling={mode!r} is not known; choose one of "
                          f"['none', 'standardize', 'unit']")
    scale[scale == 0] = 1.0
    return shift.astype(np.float32), scale.astype(np.float32)


def apply_scaling(x: np.ndarray, shift: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(x - shift) / scale as a new float32 array (the input is never modified)."""
    out = np.subtract(x, shift, dtype=np.float32)
    out /= scale
    return out


def load_data(cfg: DataConfig, device: torch.device | str = "cpu") -> DataBundle:
    """Load ``cfg.name``, split, subsample and scale it; return tensors resident on ``device``.

    Example:
        >>> b = load_data(DataConfig(name="digits", scaling="standardize"))
        >>> b.x_train.dtype, b.y_train.dtype, b.num_classes
        (torch.float32, torch.int64, 10)
    """
    raw = DATASETS.get(cfg.name)(cfg)
    train, val, test = split_indices(len(raw.y_train), raw.x_test is not None, cfg)
    x, y = _tensor(raw.x_train), raw.y_train
    # rows gathered and scaled by torch (multi-threaded, one new array each): 0.05 s for MNIST's
    # 60,000 images where NumPy's index-then-subtract took 0.5 s
    parts = [x.index_select(0, torch.from_numpy(i)) for i in (train, val)]
    parts.append(x.index_select(0, torch.from_numpy(test)) if test is not None else _tensor(raw.x_test))
    shift, scale = fit_scaling(parts[0].numpy(), raw, cfg.scaling)
    xs = [_scaled(p, shift, scale) for p in parts]
    y_test = y[test] if test is not None else raw.y_test
    ys = [torch.from_numpy(np.array(a, dtype=np.int64)) for a in (y[train], y[val], y_test)]  # own, writable
    t = [a.to(device) for pair in zip(xs, ys) for a in pair]
    return DataBundle(cfg.name, *t, num_classes=raw.num_classes, flippable=raw.flippable,
                      is_image=raw.is_image)


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A tensor over ``a``'s memory (no copy; a read-only array, memory-mapped from the cache, is
    only read from)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.asarray(a))


def _scaled(x: torch.Tensor, shift: np.ndarray, scale: np.ndarray) -> torch.Tensor:
    """``apply_scaling`` in torch: the same float32 subtract, then divide (equal bit for bit), into a
    new tensor (the source is never written)."""
    out = torch.empty(x.shape, dtype=torch.float32)
    torch.sub(x, torch.from_numpy(shift), out=out)
    return out.div_(torch.from_numpy(scale))
