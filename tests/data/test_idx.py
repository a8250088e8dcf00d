"""read_idx against the real MNIST files and against broken ones."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from tunelab.data import read_idx
from tunelab.errors import DataError

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _idx_bytes(arr: np.ndarray, kind: int = 0x08) -> bytes:
    header = bytes([0, 0, kind, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def test_real_mnist_train(shared_data: Path) -> None:
    x = read_idx(shared_data / "mnist" / "train-images-idx3-ubyte.gz")
    y = read_idx(shared_data / "mnist" / "train-labels-idx1-ubyte.gz")
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8
    assert x.max() == 255 and x.min() == 0
    assert np.bincount(y, minlength=10).tolist() == TRAIN_COUNTS


def test_real_mnist_test_labels(shared_data: Path) -> None:
    y = read_idx(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert np.bincount(y, minlength=10).tolist() == TEST_COUNTS


def test_raw_and_gzip_round_trip(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a-idx3-ubyte").write_bytes(_idx_bytes(arr))
    with gzip.open(tmp_path / "a-idx3-ubyte.gz", "wb") as f:
        f.write(_idx_bytes(arr))
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), arr)


def test_truncated_data_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    path.parent.mkdir()
    with gzip.open(path, "wb") as f:
        f.write(_idx_bytes(np.zeros(100, np.uint8))[:-10])  # header says 100, data has 90
    with pytest.raises(DataError, match="truncated: expected 100 bytes of data, found 90") as e:
        read_idx(path)
    assert "tunelab datasets download mnist" in str(e.value)
    assert str(path) in str(e.value)


def test_truncated_gzip_stream_is_rejected(shared_data: Path, tmp_path: Path) -> None:
    data = (shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a readable gzip file"):
        read_idx(path)


def test_wrong_magic_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 20)
    with pytest.raises(DataError, match=r"not an IDX file: magic bytes 0x01 0x02 0x08 0x01"):
        read_idx(path)


def test_unsupported_type_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "float-idx"
    path.write_bytes(_idx_bytes(np.zeros(4, np.uint8), kind=0x0D))
    with pytest.raises(DataError, match=r"type 0x0d \(float32\); only type 0x08"):
        read_idx(path)


def test_garbage_gz_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "garbage.gz"
    path.write_bytes(b"this is not gzip at all" * 10)
    with pytest.raises(DataError, match="not a readable gzip file") as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_missing_header_dims_and_extra_bytes(tmp_path: Path) -> None:
    short = tmp_path / "short-idx"
    short.write_bytes(bytes([0, 0, 8, 3]) + b"\x00\x00\x00\x02")  # 3 dims declared, 1 present
    with pytest.raises(DataError, match="declares 3 dimensions"):
        read_idx(short)
    extra = tmp_path / "extra-idx"
    extra.write_bytes(_idx_bytes(np.zeros(5, np.uint8)) + b"\x07\x07")
    with pytest.raises(DataError, match="2 bytes after the 5"):
        read_idx(extra)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is missing"):
        read_idx(tmp_path / "nope.gz")


def test_corrupt_file_hint_names_a_custom_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_DATA", str(tmp_path / "default"))
    for root, flag in [(tmp_path / "custom", f" --dir {tmp_path / 'custom'}"), (tmp_path / "default", "")]:
        path = root / "mnist" / "train-labels-idx1-ubyte.gz"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"this is not gzip at all")
        with pytest.raises(DataError) as e:
            read_idx(path)
        assert str(e.value).endswith(f"; re-download with `tunelab datasets download mnist{flag}`")


@pytest.mark.parametrize("labels, images_test, match", [
    (np.array([0, 1, 12, 3]), (4, 28, 28), r"train labels go up to 12 .*expected 0..9"),
    (np.zeros((4, 2)), (4, 28, 28), r"train images \(4, 28, 28\) do not match labels \(4, 2\)"),
    (np.array([0, 1, 2, 3]), (4, 14, 14), r"train images are \(28, 28\) but test images \(14, 14\)"),
])
def test_crafted_idx_sets_are_refused_in_one_line(tmp_path: Path, monkeypatch, labels, images_test, match) -> None:
    from tunelab.config import from_dict
    from tunelab.data import load_data
    from tunelab.data.download import FILES

    monkeypatch.setenv("TUNELAB_SKIP_CHECKSUM", "1")  # crafted files: the checks after the checksum
    folder = tmp_path / "mnist"
    folder.mkdir()
    arrays = [np.zeros((4, 28, 28)), labels, np.zeros(images_test), np.array([0, 1, 2, 3])]
    for (name, _), arr in zip(FILES["mnist"], arrays):
        with gzip.open(folder / name, "wb") as f:
            f.write(_idx_bytes(np.asarray(arr)))
    with pytest.raises(DataError, match=match):
        load_data(from_dict({"data": {"name": "mnist", "dir": str(tmp_path)}}).data)
