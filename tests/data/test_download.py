"""download / verify / data_dir against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tunelab.data import data_dir, download, verify
from tunelab.data.download import FILES
from tunelab.errors import ConfigError, DataError

LABELS = "t10k-labels-idx1-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"


def _serve(shared: Path, served: Path, names: list[str], sub: str = "") -> None:
    (served / sub).mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(shared / "mnist" / name, served / sub / name)


def test_full_mnist_download_verifies(shared_data: Path, http_root, tmp_path: Path) -> None:
    url, served, log = http_root
    _serve(shared_data, served, [f for f, _ in FILES["mnist"]])
    seen: dict[str, int] = {}
    paths = download("mnist", tmp_path / "dl", mirrors=[url],
                     progress=lambda f, done, total: seen.__setitem__(f, done))
    assert [p.name for p in paths] == [f for f, _ in FILES["mnist"]]
    assert all(p.parent == tmp_path / "dl" / "mnist" for p in paths)
    for path, (_, sha) in zip(paths, FILES["mnist"]):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
        assert seen[path.name] == path.stat().st_size  # progress reached the full size
    assert set(verify("mnist", tmp_path / "dl").values()) == {"ok"}
    assert not list((tmp_path / "dl" / "mnist").glob("*.part"))


def test_corrupted_file_raises_and_is_deleted(shared_data: Path, http_root, tmp_path: Path) -> None:
    url, served, _ = http_root
    _serve(shared_data, served, [LABELS])
    data = bytearray((served / LABELS).read_bytes())
    data[100] ^= 0xFF
    (served / LABELS).write_bytes(bytes(data))
    expected = dict(FILES["mnist"])[LABELS]
    with pytest.raises(DataError, match="checksum") as e:
        download("mnist", tmp_path, mirrors=[url], files=[LABELS])
    msg = str(e.value)
    assert LABELS in msg and expected in msg
    assert hashlib.sha256(bytes(data)).hexdigest() in msg
    assert list((tmp_path / "mnist").iterdir()) == []  # neither the file nor a .part remains


def test_first_mirror_404_second_works(shared_data: Path, http_root, tmp_path: Path) -> None:
    url, served, log = http_root
    (served / "empty").mkdir()
    _serve(shared_data, served, [LABELS, TRAIN_LABELS], sub="good")
    paths = download("mnist", tmp_path, mirrors=[url + "empty/", url + "good"],
                     files=[LABELS, TRAIN_LABELS])
    assert [p.name for p in paths] == [TRAIN_LABELS, LABELS]  # in FILES order
    assert log == [f"/empty/{TRAIN_LABELS}", f"/good/{TRAIN_LABELS}",
                   f"/empty/{LABELS}", f"/good/{LABELS}"]
    assert verify("mnist", tmp_path)[LABELS] == "ok"


def test_present_valid_files_are_not_refetched(shared_data: Path, http_root,
                                               tmp_path: Path) -> None:
    url, served, log = http_root
    _serve(shared_data, served, [LABELS, TRAIN_LABELS])
    (tmp_path / "mnist").mkdir()
    shutil.copyfile(shared_data / "mnist" / LABELS, tmp_path / "mnist" / LABELS)
    (tmp_path / "mnist" / TRAIN_LABELS).write_bytes(b"stale")  # wrong hash: fetched again
    download("mnist", tmp_path, mirrors=[url], files=[LABELS, TRAIN_LABELS])
    assert log == [f"/{TRAIN_LABELS}"]
    download("mnist", tmp_path, mirrors=[url], files=[LABELS, TRAIN_LABELS])
    assert log == [f"/{TRAIN_LABELS}"]  # second call: everything present, nothing fetched


def test_all_mirrors_failing(http_root, tmp_path: Path) -> None:
    url, _, _ = http_root
    pattern = r"could not download t10k-labels-idx1-ubyte.gz from any mirror.*HTTP 404"
    with pytest.raises(DataError, match=pattern):
        download("mnist", tmp_path, mirrors=[url, url + "other/"], files=[LABELS])


def test_verify_statuses(shared_data: Path, tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    shutil.copyfile(shared_data / "mnist" / LABELS, tmp_path / "mnist" / LABELS)
    (tmp_path / "mnist" / TRAIN_LABELS).write_bytes(b"corrupt")
    status = verify("mnist", tmp_path)
    assert status[LABELS] == "ok"
    assert status[TRAIN_LABELS] == "bad checksum"
    assert status["train-images-idx3-ubyte.gz"] == "missing"
    assert set(verify("mnist", shared_data).values()) == {"ok"}
    assert set(verify("fashion-mnist", shared_data).values()) == {"ok"}


def test_unknown_dataset_and_file(tmp_path: Path) -> None:
    choices = r"'digits' cannot be downloaded; choose one of \['fashion-mnist', 'mnist'\]"
    with pytest.raises(ConfigError, match=choices):
        download("digits", tmp_path)
    with pytest.raises(ConfigError, match="not part of 'mnist'"):
        download("mnist", tmp_path, files=["nope.gz"])


def test_data_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TUNELAB_DATA", str(tmp_path / "env"))
    assert data_dir(str(tmp_path / "explicit")) == tmp_path / "explicit"
    assert data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("TUNELAB_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dir(None) == tmp_path / "home" / ".cache" / "tunelab"


def test_concurrent_downloads_into_one_folder_each_verify_their_own_file(shared_data: Path, http_root,
                                                                         tmp_path: Path) -> None:
    import threading

    url, served, _ = http_root
    name = "train-images-idx3-ubyte.gz"
    _serve(shared_data, served, [name])
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            download("mnist", tmp_path, mirrors=[url], files=[name])
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert verify("mnist", tmp_path)[name] == "ok"
    assert not list((tmp_path / "mnist").glob("*.part"))


def test_a_data_folder_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match=r"cannot create the data folder '.*file/mnist': a parent is not a directory"):
        download("mnist", tmp_path / "file", mirrors=["http://127.0.0.1:9/"], files=[LABELS])
