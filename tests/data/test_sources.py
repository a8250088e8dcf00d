"""Dataset sources: built-in sets, user csv / npz files, and the catalog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tunelab.config import DataConfig, from_dict
from tunelab.data import DATASETS, dataset_names, describe, load_data
from tunelab.data import sources
from tunelab.errors import ConfigError, DataError


def _load(name: str, **kw: object) -> sources.RawData:
    return DATASETS.get(name)(DataConfig(name=name, **kw))


def test_registry_names() -> None:
    assert dataset_names() == ["csv", "digits", "fashion-mnist", "images", "mnist", "mnist1d", "npz"]
    with pytest.raises(ConfigError, match=r"data.name='mnsit' is not known.*did you mean 'mnist'"):
        from_dict({"data": {"name": "mnsit"}})


def test_digits_raw() -> None:
    raw = _load("digits")
    assert raw.x_train.shape == (1797, 1, 8, 8) and raw.x_train.dtype == np.float32
    assert raw.y_train.dtype == np.int64 and set(raw.y_train.tolist()) == set(range(10))
    assert raw.x_test is None and raw.pixel_max == 16.0 and raw.x_train.max() == 16.0
    assert raw.is_image and not raw.flippable and raw.image_shape == (1, 8, 8)


def test_mnist_and_fashion_raw(shared_data: Path) -> None:
    mnist = _load("mnist", dir=str(shared_data))
    assert mnist.x_train.shape == (60000, 1, 28, 28) and mnist.x_test.shape == (10000, 1, 28, 28)
    assert mnist.y_train.dtype == np.int64 and mnist.pixel_max == 255.0
    assert not mnist.flippable
    fashion = _load("fashion-mnist", dir=str(shared_data))
    assert fashion.flippable
    assert np.bincount(fashion.y_train).tolist() == [6000] * 10
    assert np.bincount(fashion.y_test).tolist() == [1000] * 10


def test_missing_mnist_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        _load("mnist", dir=str(tmp_path / "nowhere"))
    msg = str(e.value)
    assert "tunelab datasets download mnist" in msg and f"--dir {tmp_path / 'nowhere'}" in msg
    assert "\n" not in msg and "TUNELAB_DATA" in msg


def test_corrupt_mnist_in_a_custom_dir_names_the_dir(tmp_path: Path) -> None:
    folder = tmp_path / "custom" / "mnist"
    folder.mkdir(parents=True)
    for fname, _ in sources.FILES["mnist"]:
        (folder / fname).write_bytes(b"\x1f\x8b broken")
    with pytest.raises(DataError) as e:
        _load("mnist", dir=str(tmp_path / "custom"))
    msg = str(e.value)
    assert f"`tunelab datasets download mnist --dir {tmp_path / 'custom'}`" in msg and "\n" not in msg


def test_mnist1d_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    import requests

    def no_network(*args: object, **kw: object) -> None:
        raise AssertionError("mnist1d must not touch the network")

    monkeypatch.setattr(requests, "get", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    sources._mnist1d_arrays.cache_clear()  # force a real generation under the patch
    state = np.random.get_state()[1].copy()
    raw = _load("mnist1d")
    assert raw.x_train.shape == (4000, 40) and raw.x_test.shape == (1000, 40)
    assert raw.x_train.dtype == np.float32 and raw.y_train.dtype == np.int64
    assert not raw.is_image and raw.num_classes == 10
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global RNG untouched


def test_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    rows = ["f1,f2,label"] + [f"{i},{i * 2.5},{'cat' if i % 3 else 'ant'}" for i in range(30)]
    path.write_text("\n".join(rows) + "\n")
    raw = _load("csv", path=str(path), target="label")
    assert raw.x_train.shape == (30, 2) and raw.x_train.dtype == np.float32
    assert raw.num_classes == 2 and raw.y_train[:4].tolist() == [0, 1, 1, 0]  # ant < cat
    np.testing.assert_allclose(raw.x_train[3], [3.0, 7.5])
    bundle = load_data(DataConfig(name="csv", path=str(path), target="label", scaling="unit"))
    assert bundle.input_shape == (2,) and sum(bundle.sizes().values()) == 30


def test_csv_numeric_labels_sorted_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("x,y\n1,10\n2,2\n3,10\n4,7\n")
    assert _load("csv", path=str(path), target="y").y_train.tolist() == [2, 0, 2, 1]


def test_csv_errors(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n1,2,x\n3,oops,y\n")
    columns = r"data.target='target' is not a column.*\['a', 'b', 'label'\]"
    with pytest.raises(DataError, match=columns):
        _load("csv", path=str(path), target="target")
    with pytest.raises(DataError, match=r"column 'b' .* is not numeric \(value 'oops'\)"):
        _load("csv", path=str(path), target="label")
    with pytest.raises(ConfigError, match="data.path is required for data.name='csv'"):
        _load("csv")
    with pytest.raises(DataError, match="does not exist"):
        _load("csv", path=str(tmp_path / "absent.csv"))


def test_npz_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 6, 6), dtype=np.uint8)
    y, y_test = rng.integers(5, 8, 40), np.array([5, 7, 6, 7])
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y, x_test=x[:4], y_test=y_test)
    raw = _load("npz", path=str(path))
    assert raw.x_train.shape == (40, 1, 6, 6) and raw.x_train.dtype == np.float32
    assert raw.is_image and raw.pixel_max == 255.0 and raw.num_classes == 3
    assert raw.y_test.tolist() == [0, 2, 1, 2]  # labels 5, 6, 7 -> 0, 1, 2
    np.savez(path, x=rng.normal(size=(20, 3)), y=np.arange(20) % 2)
    vec = _load("npz", path=str(path))
    assert vec.x_train.shape == (20, 3) and not vec.is_image and vec.x_test is None


def test_npz_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, features=np.zeros((3, 2)), y=np.zeros(3))
    keys = r"needs arrays 'x' and 'y'.*found keys \['features', 'y'\]"
    with pytest.raises(DataError, match=keys):
        _load("npz", path=str(path))
    np.savez(path, x=np.zeros((3, 2)), y=np.zeros(4))
    with pytest.raises(DataError, match=r"has 3 rows but its labels have shape \(4,\)"):
        _load("npz", path=str(path))


def test_describe(shared_data: Path, tmp_path: Path) -> None:
    info = describe("mnist", dir=str(shared_data))
    assert info["sizes"] == {"train": 60000, "test": 10000} and info["num_classes"] == 10
    assert set(info["files"].values()) == {"ok"} and "CC BY-SA" in info["license"]
    assert set(describe("fashion-mnist", dir=str(tmp_path))["files"].values()) == {"missing"}
    assert describe("mnist1d")["input_shape"] == (40,)
    with pytest.raises(ConfigError, match="data.name='cifar' is not known"):
        describe("cifar")
