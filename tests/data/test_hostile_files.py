"""Hostile data files: every one is refused in one DataError line naming the file and what is
wrong, never read into a model that trains on garbage, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tunelab.data.tabular import load_csv_arrays, load_npz_arrays
from tunelab.errors import DataError


def _csv(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "d.csv"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


@pytest.mark.parametrize("body, match", [
    ("a,b,label\n1,2,x\n3,4,x\n5,6,x\n", r"has 1 label class; a classifier needs at least 2"),
    ("a,b,label\n1,2,x\n3,4,\n5,6,y\n", r"1 labels in 'label' of .* are empty or not a number \(first at row 2\)"),
    ("a,b,label\n1,2,1\n3,4,nan\n5,6,0\n", r"1 labels in 'label' .* are empty or not a number"),
    ("a,b,label\n1,nan,1\n3,4,0\n", r"column 'b' of .* is not numeric"),
    ("a,b,label\n1,2,1\n3,4\n", r"line 3 has 2 fields"),
])
def test_bad_csv_files_are_one_line(tmp_path, body, match):
    with pytest.raises(DataError, match=match):
        load_csv_arrays(_csv(tmp_path, body), "label")


def test_a_csv_that_is_not_utf8_is_one_line(tmp_path):
    with pytest.raises(DataError, match=r"is not UTF-8 text \(byte \d+\); save it as UTF-8"):
        load_csv_arrays(_csv(tmp_path, "a,label\n1,caf\xe9\n2,b\n".encode("latin-1")), "label")


def _npz(tmp_path: Path, **arrays) -> Path:
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return path


X = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
Y = np.array([0, 1, 0, 1, 0, 1])


@pytest.mark.parametrize("arrays, match", [
    (dict(x=np.array([object(), 1] * 3, dtype=object).reshape(6, 1), y=Y), r"array 'x' .* cannot be read without pickle"),
    (dict(x=X.astype(np.complex64), y=Y), r"has dtype complex64 .* expected real numbers"),
    (dict(x=np.where(np.arange(18).reshape(6, 3) == 4, np.nan, X), y=Y), r"NaN or infinite values in 1 rows \(first row 1\)"),
    (dict(x=X, y=np.zeros(6)), r"has 1 label class"),
    (dict(x=X, y=np.array([0, 1, np.nan, 1, 0, 1])), r"1 labels in 'y' .* are empty or not a number"),
    (dict(x=X, y=Y.reshape(3, 2)), r"labels have shape \(3, 2\)"),
])
def test_bad_npz_archives_are_one_line(tmp_path, arrays, match):
    with pytest.raises(DataError, match=match):
        load_npz_arrays(_npz(tmp_path, **arrays))


def test_npz_files_that_are_not_archives_are_one_line(tmp_path):
    npy = tmp_path / "a.npz"
    with open(npy, "wb") as f:
        np.save(f, X)
    with pytest.raises(DataError, match=r"holds one .npy array, not a .npz archive"):
        load_npz_arrays(npy)
    empty = tmp_path / "e.npz"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"is not a readable .npz archive"):
        load_npz_arrays(empty)
    good = _npz(tmp_path, x=np.random.default_rng(0).normal(size=(2000, 50)), y=np.arange(2000) % 2)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:50_000])
    with pytest.raises(DataError, match=r"(not a readable .npz archive|truncated or corrupt)"):
        load_npz_arrays(cut)


def test_the_cli_refuses_a_single_class_file_in_one_line(tmp_path):
    _csv(tmp_path, "a,b,label\n1,2,x\n3,4,x\n5,6,x\n")
    out = subprocess.run([sys.executable, "-m", "tunelab", "train", "--set", "data.name=csv", "--set",
                          "data.path=d.csv", "--set", "data.target=label", "--set", "training.epochs=1"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    errors = [line for line in out.stderr.splitlines() if line.strip()]  # stdout: the run's header
    assert out.returncode == 2 and len(errors) == 1 and "needs at least 2" in errors[0], out.stderr


def test_an_idx_file_that_is_not_the_published_one_is_refused_unless_asked(tmp_path, monkeypatch):
    import shutil

    from tunelab.config import from_dict
    from tunelab.data import load_data
    from tunelab.data.download import FILES, data_dir

    src = data_dir(None) / "mnist"
    if not all((src / f).is_file() for f, _ in FILES["mnist"]):
        pytest.skip("MNIST is not in the data folder (TUNELAB_DATA)")
    (tmp_path / "mnist").mkdir()
    for f, _ in FILES["mnist"]:
        shutil.copyfile(src / f, tmp_path / "mnist" / f)
    labels = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    import gzip

    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10  # one label changed: still a valid IDX file
    labels.write_bytes(gzip.compress(bytes(raw)))
    cfg = from_dict({"data": {"name": "mnist", "dir": str(tmp_path)}}).data
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz does not match its published sha256"):
        load_data(cfg)
    monkeypatch.setenv("TUNELAB_SKIP_CHECKSUM", "1")
    assert load_data(cfg) is not None


def test_a_file_that_is_not_a_csv_is_not_echoed_into_the_error(tmp_path):
    secret = "root:$6$salt$hashhashhash:19000:0:99999:7:::"
    path = _csv(tmp_path, secret + "\n" + "daemon:*:19000:0:99999:7:::\n")
    with pytest.raises(DataError) as e:
        load_csv_arrays(path, "label")
    assert "salt" not in str(e.value) and "does not look like a csv header" in str(e.value)
    with pytest.raises(DataError, match=r"columns are \['a', 'b'\]"):  # a real header is still shown
        load_csv_arrays(_csv(tmp_path, "a,b\n1,2\n"), "label")
    with pytest.raises(DataError) as e:  # a long cell is not echoed either
        load_csv_arrays(_csv(tmp_path, "a,label\n" + "x" * 5000 + ",1\n2,0\n"), "label")
    assert "x" * 30 not in str(e.value) and "of 5000 characters" in str(e.value)


def test_a_divergence_names_weight_decay_when_it_is_large():
    from tunelab.config import from_dict
    from tunelab.trainer.policy import _divergence_hint

    assert _divergence_hint(from_dict({"optimizer": {"lr": 0.1}})).startswith("lower optimizer.lr (now 0.1);")
    assert "or optimizer.weight_decay (now 0.5)" in _divergence_hint(from_dict({"optimizer": {"weight_decay": 0.5}}))
