"""The decoded-dataset cache (data/cache.py): decoded once, served from disk after, never stale.

A source file is an IDX .gz written here; the cache is keyed by the file's sha256, so a changed
source (other bytes) must be decoded again, a damaged cached file is replaced, and a cache folder
that cannot be written costs only the decoding. The MNIST loaders are checked end to end on the
shared data: the cached arrays equal the freshly decoded ones.
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest

from tunelab.config import DataConfig
from tunelab.data import cache
from tunelab.data.cache import decoded, sha256_of
from tunelab.data.idx import read_idx
from tunelab.data.sources import DATASETS


def _write_idx(path, array: np.ndarray) -> None:
    """An IDX file of ``array``: gzipped when the name ends in .gz, raw bytes otherwise."""
    content = (bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
               + array.astype(np.uint8).tobytes())
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(content)
    else:
        path.write_bytes(content)


class Counting:
    """read_idx that counts its calls: a load served by the cache decodes nothing."""

    def __init__(self):
        self.calls = 0

    def __call__(self, path):
        self.calls += 1
        return read_idx(path)


def _load(path, folder, decode):
    return decoded(path, sha256_of(path), decode, folder=folder)


def test_a_source_is_decoded_once_then_read_from_the_cache(tmp_path):
    src, folder, decode = tmp_path / "x-idx3-ubyte.gz", tmp_path / "cache", Counting()
    _write_idx(src, np.arange(24).reshape(2, 3, 4))
    first = _load(src, folder, decode)
    again = _load(src, folder, decode)
    assert decode.calls == 1
    np.testing.assert_array_equal(first, again)
    assert again.shape == (2, 3, 4) and not again.flags.writeable  # memory-mapped, read-only
    assert [p.name for p in folder.iterdir()] == [f"{sha256_of(src)}.npy"]


def test_a_changed_source_file_is_decoded_again_not_served_stale(tmp_path):
    src, folder, decode = tmp_path / "x-idx3-ubyte", tmp_path / "cache", Counting()  # raw: sizes equal
    _write_idx(src, np.zeros((2, 2, 2)))
    assert _load(src, folder, decode).sum() == 0
    stat = os.stat(src)
    _write_idx(src, np.full((2, 2, 2), 7))  # new bytes; same size, and the old modification time back
    os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(src).st_size == stat.st_size
    changed = _load(src, folder, decode)
    assert decode.calls == 2 and changed.sum() == 7 * 8


@pytest.mark.parametrize("damage", [b"", b"\x93NUMPY garbage", None], ids=["empty", "bad-header", "truncated"])
def test_a_damaged_cached_file_is_decoded_again_and_replaced(tmp_path, damage):
    src, folder, decode = tmp_path / "x-idx3-ubyte.gz", tmp_path / "cache", Counting()
    _write_idx(src, np.arange(100).reshape(4, 5, 5))
    _load(src, folder, decode)
    file = folder / f"{sha256_of(src)}.npy"
    file.write_bytes(damage if damage is not None else file.read_bytes()[:-10])
    np.testing.assert_array_equal(_load(src, folder, decode), np.arange(100).reshape(4, 5, 5))
    assert decode.calls == 2
    np.testing.assert_array_equal(np.load(file), np.arange(100).reshape(4, 5, 5))  # whole again


def test_a_cache_that_cannot_be_written_costs_only_the_decoding(tmp_path):
    src, decode = tmp_path / "x-idx3-ubyte.gz", Counting()
    _write_idx(src, np.ones((1, 2, 2)))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    assert _load(src, blocker / "cache", decode).sum() == 4
    assert _load(src, blocker / "cache", decode).sum() == 4 and decode.calls == 2
    assert not any(p.name.endswith(".part") for p in tmp_path.iterdir())


def test_caching_is_off_with_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, "off")
    src, decode = tmp_path / "x-idx3-ubyte.gz", Counting()
    _write_idx(src, np.ones((1, 2, 2)))
    decoded(src, sha256_of(src), decode)
    decoded(src, sha256_of(src), decode)
    assert decode.calls == 2 and cache.cache_dir() is None


def test_a_key_that_is_not_a_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="key='../x'"):
        decoded(tmp_path, "../x", lambda p: np.zeros(1), folder=tmp_path)


@pytest.mark.parametrize("name", ["mnist", "digits"])
def test_the_loaders_give_the_same_arrays_from_the_cache_as_decoded(name, shared_data, tmp_path, monkeypatch):
    cfg = DataConfig(name=name, dir=str(shared_data))
    monkeypatch.setenv(cache.CACHE_ENV, "off")
    fresh = DATASETS.get(name)(cfg)
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    DATASETS.get(name)(cfg)  # fills the cache
    assert len(list(tmp_path.glob("*.npy"))) == (4 if name == "mnist" else 2)
    served = DATASETS.get(name)(cfg)
    for a, b in [(fresh.x_train, served.x_train), (fresh.y_train, served.y_train),
                 (fresh.x_test, served.x_test), (fresh.y_test, served.y_test)]:
        if a is None:
            assert b is None
            continue
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
