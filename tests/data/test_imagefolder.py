"""The images source: a folder of class folders, decoded once (one decoder with predict) and cached."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tunelab.config import DataConfig
from tunelab.data import imagefolder
from tunelab.data.imagefolder import CACHE_DIR, decode_image, load_image_folder
from tunelab.data.inputs import read_images, source_labels
from tunelab.data.sources import DATASETS
from tunelab.data.splits import load_data
from tunelab.errors import DataError

COLORS = {"blue": (30, 60, 220), "green": (40, 200, 60), "red": (220, 30, 30)}  # sorted names: codes 0, 1, 2
LEVELS = {"dark": 30, "mid": 128, "light": 225}  # sorted: dark 0, light 1, mid 2


def _save(path: Path, array: np.ndarray, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, fmt)


def _folder(root: Path, classes: dict, n: int = 6, size: tuple[int, int] = (12, 10), noise: int = 0,
            ext: str = ".png", seed: int = 0) -> Path:
    """n images per class of a solid color (a tuple: RGB) or gray level (an int), h x w = size."""
    rng = np.random.default_rng(seed)
    for name, value in classes.items():
        shape = (*size, 3) if isinstance(value, tuple) else size
        for i in range(n):
            a = np.full(shape, value, np.int16) + rng.integers(-noise, noise + 1, size=shape)
            _save(root / name / f"{i}{ext}", np.clip(a, 0, 255).astype(np.uint8),
                  "JPEG" if ext == ".jpg" else "PNG")
    return root


def _cfg(path: Path, **kw) -> DataConfig:
    return DataConfig(name="images", path=str(path), **kw)


# ---------------------------------------------------------------- layout, shapes, labels

def test_classes_are_the_sorted_folder_names_and_images_are_resized(tmp_path) -> None:
    _folder(tmp_path / "pics" / "train", COLORS)
    raw = DATASETS.get("images")(_cfg(tmp_path / "pics", image_size=8))
    assert raw.x_train.shape == (18, 3, 8, 8) and raw.x_train.dtype == np.uint8
    assert raw.y_train.tolist() == [0] * 6 + [1] * 6 + [2] * 6 and raw.num_classes == 3
    assert raw.x_test is None and raw.is_image and raw.pixel_max == 255.0 and not raw.flippable
    assert raw.x_train[0, :, 3, 3].tolist() == [30, 60, 220] and raw.x_train[17, :, 0, 0].tolist() == [220, 30, 30]
    assert source_labels(_cfg(tmp_path / "pics")) == (["blue", "green", "red"], None)


def test_class_folders_directly_under_the_path_and_hidden_entries_ignored(tmp_path) -> None:
    root = _folder(tmp_path / "pics", LEVELS, n=3, ext=".jpg")
    (root / "dark" / ".DS_Store").write_bytes(b"\0junk")
    _save(root / ".hidden" / "x.png", np.zeros((4, 4), np.uint8))  # a hidden folder is no class
    (root / "README.txt").write_text("my pictures")  # a file beside the class folders is ignored
    d = load_image_folder(root, image_size=5)
    assert d.classes == ["dark", "light", "mid"] and d.x_train.shape == (9, 1, 5, 5) and d.x_test is None
    assert d.y_train.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert abs(int(d.x_train[3, 0, 2, 2]) - 225) <= 2  # JPEG is lossy, a solid gray nearly exact


def test_the_source_and_predict_share_one_decoder(tmp_path) -> None:
    img = np.random.default_rng(1).integers(0, 256, size=(21, 15, 3)).astype(np.uint8)
    for cls in ("a", "b"):
        _save(tmp_path / "f" / "train" / cls / "x.png", img)
    d = load_image_folder(tmp_path / "f", image_size=7, color="rgb")
    # shrinks (21x15 -> 7x7) by area means, rounded to bytes; read_images gives the same floats
    pred = read_images([tmp_path / "f" / "train" / "a" / "x.png"], (3, 7, 7), pixel_max=255.0).x[0]
    np.testing.assert_array_equal(d.x_train[0], np.rint(pred).astype(np.uint8))
    np.testing.assert_allclose(pred, decode_image(tmp_path / "f/train/a/x.png", 3, (7, 7)), atol=0)
    grown = load_image_folder(tmp_path / "f", image_size=30, color="rgb")  # enlarges: bilinear
    assert grown.x_train.shape == (2, 3, 30, 30)


def test_exif_rotation_is_applied(tmp_path) -> None:
    a = np.zeros((4, 8), np.uint8)
    a[:, 4:] = 255  # 8 wide, 4 high: right half white
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: shown rotated 90 degrees clockwise
    Image.fromarray(a).save(tmp_path / "r.png", exif=exif)
    got = decode_image(tmp_path / "r.png", 1, (8, 4))  # as shown: 4 wide, 8 high, no resize
    assert got[0, :4].max() == 0 and got[0, 4:].min() == 255  # the white half is now the bottom


def test_16_bit_gray_is_scaled_to_bytes_not_clipped(tmp_path) -> None:
    for cls, value in (("a", 65535), ("b", 257 * 100)):
        _save(tmp_path / "f" / "train" / cls / "x.png", np.full((4, 4), value, np.uint16))
    assert Image.open(tmp_path / "f" / "train" / "a" / "x.png").mode.startswith("I;16")
    d = load_image_folder(tmp_path / "f", image_size=4)
    assert d.color == "grayscale" and d.x_train[:, 0, 0, 0].tolist() == [255, 100]
    assert load_image_folder(tmp_path / "f", image_size=4, color="rgb").x_train[1, :, 0, 0].tolist() == [100] * 3


# ---------------------------------------------------------------- color

def test_auto_color_is_rgb_when_any_image_has_color(tmp_path) -> None:
    gray = _folder(tmp_path / "gray" / "train", LEVELS, n=2).parent
    assert load_image_folder(gray, 4).color == "grayscale"
    assert load_image_folder(gray, 4).x_train.shape[1] == 1
    # RGB files whose pixels are gray are gray
    rgb_gray = _folder(tmp_path / "rg" / "train", {"a": (90, 90, 90), "b": (10, 10, 10)}, n=2).parent
    assert load_image_folder(rgb_gray, 4).color == "grayscale"
    # one colored image, in test/, makes the whole set rgb
    _save(rgb_gray / "test" / "a" / "c.png", np.full((5, 5, 3), (90, 91, 90), np.uint8))
    d = load_image_folder(rgb_gray, 4)
    assert d.color == "rgb" and d.x_train.shape[1] == 3 and d.x_test.shape == (1, 3, 4, 4)


def test_color_can_be_forced(tmp_path) -> None:
    root = _folder(tmp_path / "c" / "train", COLORS, n=1).parent
    gray = load_image_folder(root, 4, color="grayscale")
    assert gray.color == "grayscale" and gray.x_train.shape == (3, 1, 4, 4)
    assert gray.x_train[2, 0, 0, 0] == round(0.299 * 220 + 0.587 * 30 + 0.114 * 30)  # Pillow's "L" luma
    levels = _folder(tmp_path / "g" / "train", LEVELS, n=1).parent
    rgb = load_image_folder(levels, 4, color="rgb")
    assert rgb.x_train.shape == (3, 3, 4, 4) and (rgb.x_train == rgb.x_train[:, :1]).all()


# ---------------------------------------------------------------- test set: given or carved

def test_a_given_test_folder_may_hold_some_of_the_classes(tmp_path) -> None:
    root = _folder(tmp_path / "p" / "train", COLORS).parent
    _folder(root / "test", {"red": COLORS["red"], "blue": COLORS["blue"]}, n=2)
    raw = DATASETS.get("images")(_cfg(root, image_size=6))
    assert raw.x_test.shape == (4, 3, 6, 6) and raw.y_test.tolist() == [0, 0, 2, 2]
    b = load_data(_cfg(root, image_size=6, val_fraction=0.2))
    assert b.sizes() == {"train": 14, "val": 4, "test": 4} and b.input_shape == (3, 6, 6)
    assert float(b.x_train.max()) <= 1.0 and b.x_train.dtype.is_floating_point  # unit scaling: /255


def test_without_test_folder_the_test_set_is_carved(tmp_path) -> None:
    root = _folder(tmp_path / "p" / "train", COLORS).parent
    b = load_data(_cfg(root, image_size=6, test_fraction=0.25, val_fraction=0.1))
    assert b.sizes()["test"] == round(18 * 0.25) and sum(b.sizes().values()) == 18


# ---------------------------------------------------------------- cache

def _cache_files(root: Path) -> list[Path]:
    return sorted((root / CACHE_DIR).glob("*.npz"))


def _counting_decoder(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    real = imagefolder.decode_image

    def counted(path, channels, size):
        calls.append(Path(path))
        return real(path, channels, size)

    monkeypatch.setattr(imagefolder, "decode_image", counted)
    return calls


def test_a_second_load_reads_the_cache_and_a_change_invalidates_it(tmp_path, monkeypatch) -> None:
    root = _folder(tmp_path / "p" / "train", COLORS, n=2).parent
    calls = _counting_decoder(monkeypatch)
    first = load_image_folder(root, 6)
    assert len(calls) == 6 and len(_cache_files(root)) == 1
    assert not list((root / CACHE_DIR).glob(".tmp-*"))  # the temp file was renamed into place
    again = load_image_folder(root, 6)
    assert len(calls) == 6  # no image decoded again
    np.testing.assert_array_equal(again.x_train, first.x_train)
    assert again.y_train.tolist() == first.y_train.tolist() and again.color == "rgb"

    # another size is another cache file
    load_image_folder(root, 5)
    assert len(calls) == 12 and len(_cache_files(root)) == 2

    # a changed image (new content, new mtime) is decoded again, and its new pixels are used
    changed = root / "train" / "red" / "0.png"
    _save(changed, np.full((12, 10, 3), (0, 0, 0), np.uint8))
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    d = load_image_folder(root, 6)
    assert len(calls) == 18 and d.x_train[4].max() == 0

    # an added image too
    _save(root / "train" / "red" / "new.png", np.full((12, 10, 3), 7, np.uint8))
    assert load_image_folder(root, 6).x_train.shape[0] == 7 and len(calls) == 25


def test_a_corrupt_cache_file_is_decoded_again(tmp_path, monkeypatch) -> None:
    root = _folder(tmp_path / "p" / "train", COLORS, n=1).parent
    first = load_image_folder(root, 4)
    [cache] = _cache_files(root)
    cache.write_bytes(b"garbage")
    calls = _counting_decoder(monkeypatch)
    np.testing.assert_array_equal(load_image_folder(root, 4).x_train, first.x_train)
    assert len(calls) == 3 and cache.read_bytes()[:2] == b"PK"  # rewritten as a .npz (a zip)


def test_a_read_only_folder_is_not_cached(tmp_path, monkeypatch) -> None:
    root = _folder(tmp_path / "p" / "train", COLORS, n=1).parent
    if os.geteuid() == 0:  # root writes anyway: fail the write as a read-only folder does
        def refuse(*a, **kw):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr(imagefolder.tempfile, "mkstemp", refuse)
    modes = {p: p.stat().st_mode for p in [root, *root.rglob("*")] if p.is_dir()}
    for p in modes:
        p.chmod(0o555)
    try:
        calls = _counting_decoder(monkeypatch)
        assert load_image_folder(root, 4).x_train.shape == (3, 3, 4, 4)
        assert load_image_folder(root, 4).x_train.shape == (3, 3, 4, 4)
        assert len(calls) == 6 and _cache_files(root) == []  # decoded each time, no error
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


# ---------------------------------------------------------------- errors: one line, naming the file

def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("content", [b"not an image", _png_bytes()[:400]], ids=["garbage", "truncated"])
def test_a_corrupt_image_is_named(tmp_path, content) -> None:
    root = _folder(tmp_path / "p" / "train", COLORS, n=2).parent
    (root / "train" / "green" / "bad.png").write_bytes(content)
    for color in ("auto", "rgb", "grayscale"):
        with pytest.raises(DataError, match=r"^image '[^']*train/green/bad.png' cannot be read \(.*\); "
                                            r"allowed: a valid image file \(.png, .jpg") as e:
            load_image_folder(root, 4, color=color)
        assert "\n" not in str(e.value)


def _make(tmp_path: Path, case: str) -> Path:
    root = tmp_path / "p"
    if case == "missing":
        return root
    if case == "file":
        root.write_text("x")
        return root
    if case == "one class":
        return _folder(root / "train", {"cat": 10}, n=1).parent
    _folder(root / "train", {"cat": 10, "dog": 200}, n=1)
    if case == "no classes":
        (root / "train" / "cat" / "0.png").rename(root / "stray.png")
        (root / "train" / "cat").rmdir()
        (root / "train" / "dog" / "0.png").unlink()
        (root / "train" / "dog").rmdir()
    elif case == "empty class":
        (root / "train" / "emu").mkdir()
        (root / "train" / "emu" / ".keep").write_text("")
    elif case == "not an image":
        (root / "train" / "dog" / "notes.txt").write_text("x")
    elif case == "nested folder":
        (root / "train" / "dog" / "more").mkdir()
    elif case == "stray image":
        _save(root / "train" / "x.png", np.zeros((2, 2), np.uint8))
    elif case == "unknown test class":
        _folder(root / "test", {"cow": 10}, n=1)
    elif case == "empty test class":
        (root / "test" / "cat").mkdir(parents=True)
    elif case == "folder beside train":
        (root / "val").mkdir()
    elif case == "test without train":
        (root / "train").rename(root / "test")
    return root


@pytest.mark.parametrize("case, message", [
    ("missing", r"data.path='[^']*p': folder '[^']*p' does not exist; allowed: a folder of train/<class>/"),
    ("file", r"data.path='[^']*p' is a file; data.name=images reads a folder of train/<class>/"),
    ("no classes", r"folder '[^']*p/train' holds no class folders; allowed: train/<class>/"),
    ("one class", r"folder '[^']*p/train' holds 1 class folder \('cat'\); a classifier needs at least 2"),
    ("empty class", r"class folder '[^']*p/train/emu' holds no images \(.png, .jpg, .jpeg"),
    ("not an image", r"file '[^']*train/dog/notes.txt' is not an image; allowed in class folder "
                     r"'[^']*train/dog': .png"),
    ("nested folder", r"folder '[^']*train/dog/more' is inside class folder '[^']*train/dog'; allowed"),
    ("stray image", r"image '[^']*train/x.png' is outside a class folder; allowed: images in '[^']*train/<class>'"),
    ("unknown test class", r"class folder '[^']*test/cow' has no match in '[^']*train'; allowed: test classes "
                           r"that are training classes \['cat', 'dog'\]"),
    ("empty test class", r"class folder '[^']*test/cat' holds no images"),
    ("folder beside train", r"folder '[^']*p/val' beside train/ is not read; allowed beside train/: test/"),
    ("test without train", r"folder '[^']*p' has test/ but no train/"),
])
def test_layout_errors_are_one_line_naming_the_folder(tmp_path, case, message) -> None:
    root = _make(tmp_path, case)
    with pytest.raises(DataError, match=f"^{message}") as e:
        DATASETS.get("images")(_cfg(root))
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- training end to end

def test_train_on_a_folder_beats_chance_and_predict_prints_folder_names(tmp_path) -> None:
    from tunelab import train
    from tunelab.analysis.predict import predict_files
    from tunelab.trainer.load import load_run

    root = _folder(tmp_path / "pics" / "train", COLORS, n=16, noise=40).parent  # each class: its own channel
    _folder(root / "test", COLORS, n=4, noise=40, seed=1)
    cfg = {"data": {"name": "images", "path": str(root), "image_size": 6, "val_fraction": 0.125},
           "model": {"name": "mlp", "hidden": [16]}, "optimizer": {"name": "adam", "lr": 0.01},
           "training": {"epochs": 2, "batch_size": 8, "threads": 1}}
    result = train(cfg, out=tmp_path / "run")
    assert result.status == "completed" and result.test_accuracy > 0.6  # chance: 1/3
    run = load_run(tmp_path / "run")
    assert run.class_names == ["blue", "green", "red"] and run.input_shape == (3, 6, 6)
    preds = predict_files(run, [root / "test" / "red" / "0.png", root / "test" / "blue" / "1.png"])
    assert preds.labels == ["red", "blue"]


def test_evaluating_on_another_folder_matches_classes_by_name(tmp_path) -> None:
    from tunelab import train
    from tunelab.analysis.predict import evaluate_run, labelled_split
    from tunelab.trainer.load import load_run

    root = _folder(tmp_path / "pics" / "train", COLORS, n=16, noise=40).parent
    cfg = {"data": {"name": "images", "path": str(root), "image_size": 6, "val_fraction": 0.125},
           "model": {"name": "mlp", "hidden": [16]}, "optimizer": {"name": "adam", "lr": 0.01},
           "training": {"epochs": 3, "batch_size": 8, "threads": 1}}
    train(cfg, out=tmp_path / "run")
    run = load_run(tmp_path / "run")  # classes blue, green, red
    other = _folder(tmp_path / "other" / "train", {"red": COLORS["red"]}, n=6, noise=40, seed=3).parent
    _folder(other / "train", {"green": COLORS["green"]}, n=6, noise=40, seed=4)
    data = {"data.name=images", f"data.path={other}", "data.val_fraction=0.5", "data.test_fraction=0.5"}
    _, y = labelled_split(run, replace_data(run, data), "all")
    # the other folder's own codes would be green 0, red 1; the run's are green 1, red 2
    assert sorted(set(y.tolist())) == [1, 2] and (y == 2).sum() == 6
    assert evaluate_run(run, "all", [f"path={other}"]).accuracy > 0.6
    stranger = _folder(tmp_path / "strange" / "train", {"purple": (128, 0, 128), "red": COLORS["red"]}, n=2).parent
    with pytest.raises(DataError, match=r"label 'purple' of data.path=.* is not a class of the run"):
        evaluate_run(run, "all", [f"path={stranger}"])


def replace_data(run, overrides):
    from tunelab.config import replace

    return replace(run.cfg, sorted(overrides)).data


def test_cli_reports_a_corrupt_image_in_one_line(tmp_path) -> None:
    root = _folder(tmp_path / "pics" / "train", LEVELS, n=2).parent
    (root / "train" / "mid" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    res = subprocess.run([sys.executable, "-m", "tunelab", "train", "--set", "data.name=images",
                          "--set", f"data.path={root}", "--set", "training.epochs=1",
                          "--set", "training.threads=1", "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "train/mid/broken.jpg' cannot be read" in lines[0], res.stderr
