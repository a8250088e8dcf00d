"""load_data: split sizes, disjointness, seeds, subsampling and train-only scaling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tunelab.config import DataConfig
from tunelab.data import DATASETS, load_data
from tunelab.data.splits import split_indices
from tunelab.errors import ConfigError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def _digits_raw() -> np.ndarray:
    return DATASETS.get("digits")(DataConfig()).x_train.reshape(1797, -1)


def test_digits_sizes_add_up() -> None:
    b = load_data(DataConfig(name="digits", val_fraction=0.1, test_fraction=0.2))
    assert b.sizes() == {"train": 1294, "val": 144, "test": 359}
    assert b.x_train.dtype == torch.float32 and b.y_train.dtype == torch.int64
    assert b.x_train.device.type == "cpu" and b.is_image and b.input_shape == (1, 8, 8)


def test_split_indices_disjoint_and_complete() -> None:
    tr, va, te = split_indices(1797, False, DataConfig(split_seed=3))
    assert len(np.intersect1d(tr, va)) == len(np.intersect1d(tr, te)) == 0
    assert len(np.intersect1d(va, te)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(1797))


def test_bundle_rows_come_from_the_split_indices() -> None:
    cfg = DataConfig(name="digits", scaling="none", split_seed=5)
    b, raw = load_data(cfg), _digits_raw()
    tr, va, te = split_indices(1797, False, cfg)
    np.testing.assert_array_equal(b.x_train.reshape(len(tr), -1).numpy(), raw[tr])
    np.testing.assert_array_equal(b.x_val.reshape(len(va), -1).numpy(), raw[va])
    np.testing.assert_array_equal(b.x_test.reshape(len(te), -1).numpy(), raw[te])


def test_same_seed_same_split_other_seed_other_split() -> None:
    a = load_data(DataConfig(name="digits", split_seed=1))
    b = load_data(DataConfig(name="digits", split_seed=1))
    c = load_data(DataConfig(name="digits", split_seed=2))
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)
    assert a.x_val.shape == c.x_val.shape and not torch.equal(a.x_val, c.x_val)


def test_standardize_fitted_on_train_only() -> None:
    cfg = DataConfig(name="digits", scaling="standardize")
    b, raw = load_data(cfg), _digits_raw()
    tr, va, _ = split_indices(1797, False, cfg)
    x_tr = b.x_train.reshape(len(tr), -1).double()
    raw_std = raw[tr].std(axis=0)
    assert x_tr.mean(0).abs().max() < 1e-5
    np.testing.assert_allclose(x_tr.std(0, unbiased=False)[raw_std > 0].numpy(), 1.0, rtol=1e-4)
    assert (x_tr[:, raw_std == 0] == 0).all()  # constant features: std 0 -> scale 1
    mean, std = raw[tr].mean(0), np.where(raw_std > 0, raw_std, 1.0)
    np.testing.assert_allclose(b.x_val.reshape(len(va), -1).numpy(), (raw[va] - mean) / std,
                               rtol=1e-5, atol=1e-5)
    assert b.x_val.reshape(len(va), -1).mean(0).abs().max() > 1e-3  # not re-centred on val


def test_unit_scaling_images_and_vectors() -> None:
    b = load_data(DataConfig(name="digits", scaling="unit", split_seed=5))
    ref = load_data(DataConfig(name="digits", scaling="none", split_seed=5))
    torch.testing.assert_close(b.x_train, ref.x_train / 16)
    v = load_data(DataConfig(name="mnist1d", scaling="unit"))
    assert v.x_train.shape[1:] == (40,) and not v.is_image
    torch.testing.assert_close(v.x_train.min(0).values, torch.zeros(40))
    torch.testing.assert_close(v.x_train.max(0).values, torch.ones(40))


def test_source_test_split_is_kept() -> None:
    b = load_data(DataConfig(name="mnist1d", scaling="none", val_fraction=0.25))
    raw = DATASETS.get("mnist1d")(DataConfig(name="mnist1d"))
    assert b.sizes() == {"train": 3000, "val": 1000, "test": 1000}
    np.testing.assert_array_equal(b.x_test.numpy(), raw.x_test)
    np.testing.assert_array_equal(b.y_test.numpy(), raw.y_test)


def test_train_size_subsamples_after_the_val_carve() -> None:
    full = load_data(DataConfig(name="digits", split_seed=4))
    sub = load_data(DataConfig(name="digits", split_seed=4, train_size=100))
    assert len(sub.y_train) == 100
    assert torch.equal(sub.x_val, full.x_val) and torch.equal(sub.x_test, full.x_test)
    rows = {tuple(r) for r in full.x_train.reshape(len(full.y_train), -1).tolist()}
    assert all(tuple(r) in rows for r in sub.x_train.reshape(100, -1).tolist())
    with pytest.raises(ConfigError, match=r"data.train_size=5000 exceeds the 1294"):
        load_data(DataConfig(name="digits", train_size=5000))


def test_fraction_leaving_nothing_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"data.val_fraction=0.0001 takes 0 of"):
        split_indices(100, True, DataConfig(val_fraction=0.0001))


def test_mnist_bundle(shared_data: Path) -> None:
    b = load_data(DataConfig(name="mnist", dir=str(shared_data)))
    assert b.sizes() == {"train": 54000, "val": 6000, "test": 10000}
    assert b.x_train.shape[1:] == (1, 28, 28) and b.x_train.dtype == torch.float32
    assert float(b.x_train.min()) == 0.0 and float(b.x_train.max()) == 1.0
    counts = torch.bincount(b.y_train, minlength=10) + torch.bincount(b.y_val, minlength=10)
    assert counts.tolist() == MNIST_TRAIN_COUNTS
    assert not b.flippable and b.num_classes == 10


@pytest.mark.parametrize("name,scaling", [("digits", "unit"), ("digits", "standardize"), ("digits", "none"),
                                          ("mnist1d", "unit"), ("mnist1d", "standardize"), ("mnist", "unit")])
def test_the_bundle_equals_numpy_scaling_bit_for_bit(name, scaling, shared_data: Path) -> None:
    """load_data gathers and scales in torch; the reference is NumPy's apply_scaling on the same rows
    (the float32 subtract then divide that predict's path and earlier bundles use)."""
    from tunelab.data.sources import DATASETS
    from tunelab.data.splits import apply_scaling, fit_scaling

    cfg = DataConfig(name=name, scaling=scaling, dir=str(shared_data))
    raw = DATASETS.get(name)(cfg)
    before = np.array(raw.x_train)  # a copy: load_data must not write into the source's arrays
    bundle = load_data(cfg)
    train, val, test = split_indices(len(raw.y_train), raw.x_test is not None, cfg)
    shift, scale = fit_scaling(raw.x_train[train], raw, scaling)
    x_test = raw.x_train[test] if test is not None else raw.x_test
    for got, rows in [(bundle.x_train, raw.x_train[train]), (bundle.x_val, raw.x_train[val]), (bundle.x_test, x_test)]:
        want = torch.from_numpy(apply_scaling(rows, shift, scale))
        assert got.dtype == torch.float32 and torch.equal(got, want)
    np.testing.assert_array_equal(DATASETS.get(name)(cfg).x_train, before)  # mnist1d's arrays are shared
