"""The ``images`` source: a folder of class folders of image files, decoded once and cached.

Accepted layouts of ``data.path`` (hidden files and folders, names starting with ".", are
ignored everywhere, and so are files beside train/ and non-image files beside class folders):

* ``train/<class>/*.png`` and optionally ``test/<class>/*.png``; without test/ the test set is
  carved out of train/ with ``data.test_fraction``. No other folder may sit beside them.
* ``<class>/*.png`` directly: every subfolder is a class, the test set is carved.

Classes are the sorted names of the training class folders (their codes 0..K-1); test/ may hold
only some of them. A class folder holds image files only (IMAGE_SUFFIXES, any letter case).
Each image is decoded with Pillow (EXIF rotation applied), converted to gray (Pillow "L") or
"RGB", and resized to ``image_size`` x ``image_size`` (the aspect ratio is not kept) by
``decode_image``: area averaging when it shrinks both sides, bilinear otherwise. Pixels are
stored as uint8 (N, C, H, W), 0..255.

The decoded arrays are cached in ``data.path/.tunelab-cache/`` (one .npz per image_size and
color), keyed by the relative path, size and modification time of every image: a changed,
added or removed image decodes the folder again. The folder may be deleted at any time; a
folder that cannot be written just is not cached.

Example:
    >>> from PIL import Image
    >>> for name, value in [("dark", 20), ("light", 230)]:
    ...     for i in range(3):
    ...         Path(f"pics/{name}").mkdir(parents=True, exist_ok=True)
    ...         Image.new("L", (12, 10), value + i).save(f"pics/{name}/{i}.png")
    >>> d = load_image_folder("pics", image_size=6)
    >>> d.x_train.shape, d.x_train.dtype, d.y_train.tolist(), d.classes, d.color, d.x_test
    ((6, 1, 6, 6), dtype('uint8'), [0, 0, 0, 1, 1, 1], ['dark', 'light'], 'grayscale', None)
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from tunelab.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "CACHE_DIR", "ImageArrays", "FolderLayout", "decode_image", "has_color",
           "scan_folder", "image_classes", "load_image_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
CACHE_DIR = ".tunelab-cache"
_CACHE_VERSION = 1
_COLORS = ("auto", "grayscale", "rgb")
_LAYOUTS = "train/<class>/ image folders with an optional test/<class>/, or <class>/ folders directly"
# what Pillow raises for a corrupt, truncated or unsupported file (it is not only OSError)
_PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error)


def _suffixes() -> str:
    return ", ".join(IMAGE_SUFFIXES)


# --------------------------------------------------------------------------- decoding

def _pixels(path: str | Path, mode: str) -> np.ndarray:
    """The pixels of one image file as uint8 (h, w) for mode "L" or (h, w, 3) for "RGB", after
    its EXIF rotation (16-bit gray is scaled to 0..255); an unreadable file is one DataError naming it."""
    from PIL import Image, ImageOps, UnidentifiedImageError  # Pillow: a dependency of matplotlib

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode.startswith("I;16"):  # 16-bit gray: Pillow's convert would clip at 255
                a = np.rint(np.asarray(im).astype(np.float32) / 257).astype(np.uint8)
                return a if mode == "L" else np.repeat(a[..., None], 3, axis=2)
            return np.asarray(im.convert(mode))
    except (*_PIL_ERRORS, Image.DecompressionBombError) as e:
        why = "not an image format Pillow knows" if isinstance(e, UnidentifiedImageError) else \
            f"{type(e).__name__}: {' '.join(str(e).split())}"
        raise DataError(f"image {str(path)!r} cannot be read ({why}); allowed: a valid image file "
                        f"({_suffixes()})") from None


def decode_image(path: str | Path, channels: int, size: Sequence[int]) -> np.ndarray:
    """One image file as float32 (channels, H, W) pixels 0..255: gray (Pillow "L", channels=1) or
    "RGB" (channels=3), resized to ``size`` = (H, W) without keeping the aspect ratio.

    Resampling (torch.nn.functional.interpolate): "area" (the mean of the pixels each target
    pixel covers, no aliasing) when both sides shrink or stay, else "bilinear" (align_corners
    False). An image already of ``size`` is returned as decoded.

    Example:
        >>> from PIL import Image
        >>> Image.new("RGB", (4, 2), (200, 100, 0)).save("one.png")
        >>> a = decode_image("one.png", 1, (1, 2))
        >>> a.shape, a.dtype, a.round().tolist()    # luma 0.299 R + 0.587 G + 0.114 B
        ((1, 1, 2), dtype('float32'), [[[118.0, 118.0]]])
    """
    import torch
    import torch.nn.functional as F

    if channels not in (1, 3):
        raise DataError(f"images have 1 (gray) or 3 (RGB) channels; got channels={channels}")
    size = tuple(int(s) for s in size)
    a = _pixels(path, "L" if channels == 1 else "RGB").astype(np.float32)
    t = torch.from_numpy(a.reshape(*a.shape[:2], -1)).permute(2, 0, 1)[None]  # (1, C, h, w)
    if tuple(t.shape[2:]) != size:
        smaller = t.shape[2] >= size[0] and t.shape[3] >= size[1]
        # area averages the pixels each target pixel covers (no aliasing when shrinking)
        t = F.interpolate(t, size=size, mode="area" if smaller else "bilinear",
                          align_corners=None if smaller else False)
    return t[0].numpy()


def has_color(path: str | Path) -> bool:
    """Whether an image file has a pixel whose red, green and blue differ (gray modes are not
    opened further: their header says so).

    Example:
        >>> from PIL import Image
        >>> Image.new("RGB", (2, 2), (9, 9, 9)).save("gray.png")
        >>> has_color("gray.png")
        False
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            gray = im.mode in ("1", "L", "LA", "La", "I", "F") or im.mode.startswith("I;")
    except (*_PIL_ERRORS, Image.DecompressionBombError):
        gray = False  # _pixels says why in one line
    if gray:
        return False
    a = _pixels(path, "RGB")
    return bool((a[..., 0] != a[..., 1]).any() or (a[..., 1] != a[..., 2]).any())


# --------------------------------------------------------------------------- folders

@dataclass(frozen=True)
class FolderLayout:
    """The images of a folder: ``train`` and ``test`` (None: to be carved) as (file, class code)
    pairs in a stable order, ``classes`` the sorted training class names."""

    root: Path
    classes: list[str]
    train: list[tuple[Path, int]]
    test: Optional[list[tuple[Path, int]]]


def _entries(folder: Path) -> list[Path]:
    """Sorted non-hidden entries of a folder; an unreadable one is a DataError naming it."""
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as e:
        raise DataError(f"folder {str(folder)!r} cannot be read ({type(e).__name__}: {e.strerror or e})") from None


def _class_files(folder: Path) -> list[Path]:
    """The image files of one class folder (sorted); anything else in it is a DataError."""
    files = []
    for p in _entries(folder):
        if p.is_dir():
            raise DataError(f"folder {str(p)!r} is inside class folder {str(folder)!r}; allowed in a class "
                            f"folder: image files only ({_suffixes()})")
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"file {str(p)!r} is not an image; allowed in class folder {str(folder)!r}: "
                            f"{_suffixes()} (hidden files are ignored)")
        files.append(p)
    if not files:
        raise DataError(f"class folder {str(folder)!r} holds no images ({_suffixes()})")
    return files


def _classes(root: Path) -> dict[str, list[Path]]:
    """Class name -> image files of a folder of class folders."""
    out = {}
    for p in _entries(root):
        if p.is_dir():
            out[p.name] = p
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            raise DataError(f"image {str(p)!r} is outside a class folder; allowed: images in "
                            f"{str(root / '<class>')!r} folders")
    if not out:
        raise DataError(f"folder {str(root)!r} holds no class folders; allowed: {_LAYOUTS}")
    return {name: _class_files(folder) for name, folder in out.items()}


def _class_roots(path: str | Path) -> tuple[Path, Path, Optional[Path]]:
    """(data.path, the folder of training classes, the folder of test classes or None)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"data.path={str(path)!r}: folder {str(root)!r} does not exist; allowed: a folder of "
                        f"{_LAYOUTS}")
    if not root.is_dir():
        raise DataError(f"data.path={str(path)!r} is a file; data.name=images reads a folder of {_LAYOUTS}")
    subdirs = [p for p in _entries(root) if p.is_dir()]
    names = {p.name for p in subdirs}
    if "train" not in names:
        if "test" in names:
            raise DataError(f"folder {str(root)!r} has test/ but no train/; allowed: {_LAYOUTS}")
        return root, root, None
    for p in subdirs:
        if p.name not in ("train", "test"):
            raise DataError(f"folder {str(p)!r} beside train/ is not read; allowed beside train/: test/ "
                            f"(rename it with a leading '.' to keep it)")
    return root, root / "train", root / "test" if "test" in names else None


def scan_folder(path: str | Path) -> FolderLayout:
    """The layout of ``path`` (see the module docstring); each breach of it is one DataError
    naming the file or folder: a missing folder, no class folders, an empty class folder, a
    non-image file, fewer than 2 classes, a test class that train/ lacks."""
    root, train_root, test_root = _class_roots(path)
    train = _classes(train_root)
    classes = sorted(train)
    if len(classes) < 2:
        raise DataError(f"folder {str(train_root)!r} holds {len(classes)} class folder ({classes[0]!r}); "
                        f"a classifier needs at least 2 class folders")
    code = {c: i for i, c in enumerate(classes)}
    test = None
    if test_root is not None:
        test = _classes(test_root)
        for name in test:
            if name not in code:
                shown = classes if len(classes) <= 12 else [*classes[:12], "..."]
                raise DataError(f"class folder {str(test_root / name)!r} has no match in {str(train_root)!r}; "
                                f"allowed: test classes that are training classes {shown}")

    def pairs(found: dict[str, list[Path]]) -> list[tuple[Path, int]]:
        return [(f, code[c]) for c in sorted(found) for f in found[c]]

    return FolderLayout(root, classes, pairs(train), None if test is None else pairs(test))


def image_classes(path: str | Path) -> list[str]:
    """The class names of an image folder (its sorted training class folders), as codes 0..K-1.

    Example:
        >>> image_classes("pics")   # the folder the module example wrote
        ['dark', 'light']
    """
    return scan_folder(path).classes


# --------------------------------------------------------------------------- loading, cache

@dataclass(frozen=True)
class ImageArrays:
    """Decoded images: uint8 x (N, C, H, W) 0..255, int64 y codes into ``classes``; no test
    set gives x_test = y_test = None. ``color``: "grayscale" (C=1) or "rgb" (C=3)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: Optional[np.ndarray]
    y_test: Optional[np.ndarray]
    classes: list[str]
    color: str


def _cache_path(layout: FolderLayout, image_size: int, color: str) -> Path:
    """The cache file: a hash of every image's relative path, size and mtime, the size, the color."""
    def listing(pairs):
        out = []
        for f, c in pairs:
            try:
                st = f.stat()
            except OSError as e:
                raise DataError(f"image {str(f)!r} cannot be read ({type(e).__name__}: {e.strerror or e})") from None
            out.append([f.relative_to(layout.root).as_posix(), c, st.st_size, st.st_mtime_ns])
        return out

    key = {"version": _CACHE_VERSION, "image_size": image_size, "color": color, "classes": layout.classes,
           "train": listing(layout.train), "test": None if layout.test is None else listing(layout.test)}
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:20]
    return layout.root / CACHE_DIR / f"images-{image_size}px-{color}-{digest}.npz"


def _read_cache(path: Path, layout: FolderLayout, image_size: int) -> Optional[ImageArrays]:
    """The cached arrays, or None when there are none or they do not fit (then: decode again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        x, y, color, classes = arrays["x_train"], arrays["y_train"], str(arrays["color"]), arrays["classes"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    x_te, y_te = arrays.get("x_test"), arrays.get("y_test")
    shape = ({"grayscale": 1, "rgb": 3}.get(color), image_size, image_size)

    def fits(a: Optional[np.ndarray], b: Optional[np.ndarray], pairs: list[tuple[Path, int]]) -> bool:
        return (a is not None and b is not None and a.dtype == np.uint8 and tuple(a.shape) == (len(pairs), *shape)
                and b.tolist() == [c for _, c in pairs])

    ok = classes.tolist() == layout.classes and fits(x, y, layout.train) and (
        x_te is None and y_te is None if layout.test is None else fits(x_te, y_te, layout.test))
    return ImageArrays(x, y.astype(np.int64), x_te, None if y_te is None else y_te.astype(np.int64),
                       list(layout.classes), color) if ok else None


def _write_cache(path: Path, data: ImageArrays) -> None:
    """Write the arrays atomically (a temp file, then os.replace); a folder that cannot be
    written is skipped: the cache only saves time."""
    arrays = {"x_train": data.x_train, "y_train": data.y_train, "classes": np.array(data.classes, dtype=str),
              "color": np.array(data.color)}
    if data.x_test is not None:
        arrays.update(x_test=data.x_test, y_test=data.y_test)
    tmp = None
    try:
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass  # read-only or full: train without a cache
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _decode_all(pairs: list[tuple[Path, int]], channels: int, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.empty((len(pairs), channels, image_size, image_size), dtype=np.uint8)
    for i, (f, _) in enumerate(pairs):
        x[i] = np.clip(np.rint(decode_image(f, channels, (image_size, image_size))), 0, 255)
    return x, np.array([c for _, c in pairs], dtype=np.int64)


def load_image_folder(path: str | Path, image_size: int = 28, color: str = "auto") -> ImageArrays:
    """Decode (or read from the cache) the images of folder ``path`` at ``image_size`` x
    ``image_size``; ``color``: "grayscale", "rgb", or "auto" (rgb when any image, train or
    test, has color, see ``has_color``). See the module docstring for the layout and cache."""
    if color not in _COLORS:
        raise DataError(f"data.color={color!r} is not known; allowed: {', '.join(_COLORS)}")
    if not isinstance(image_size, int) or image_size < 1:
        raise DataError(f"data.image_size={image_size!r} is not allowed; allowed: a positive int")
    layout = scan_folder(path)
    cache = _cache_path(layout, image_size, color)
    cached = _read_cache(cache, layout, image_size)
    if cached is not None:
        return cached
    every = layout.train + (layout.test or [])
    if color == "auto":
        color = "rgb" if any(has_color(f) for f, _ in every) else "grayscale"  # stops at the first
    channels = 3 if color == "rgb" else 1
    x, y = _decode_all(layout.train, channels, image_size)
    x_te, y_te = _decode_all(layout.test, channels, image_size) if layout.test is not None else (None, None)
    data = ImageArrays(x, y, x_te, y_te, list(layout.classes), color)
    _write_cache(cache, data)
    return data
