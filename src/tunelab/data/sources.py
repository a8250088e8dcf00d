"""Dataset sources: ``data.name`` -> a loader that returns raw NumPy arrays and metadata.

Each loader takes the DataConfig and returns a RawData: float32 inputs, int64 labels in
0..K-1, the source's own test split when it has one (else None: ``load_data`` carves one),
and what scaling and augmentation need to know (pixel maximum, image or vector, whether a
horizontal flip keeps the label). Splitting and scaling happen in ``splits.load_data``.

Example:
    >>> from tunelab.config import DataConfig
    >>> from tunelab.data.sources import DATASETS
    >>> raw = DATASETS.get("digits")(DataConfig(name="digits"))
    >>> raw.x_train.shape, raw.pixel_max, raw.x_test is None
    ((1797, 1, 8, 8), 16.0, True)
"""

from __future__ import annotations

import functools
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from tunelab.config import DataConfig
from tunelab.data.cache import decoded
from tunelab.data.download import ENV_VAR, FILES, data_dir, download_command, sha256_of
from tunelab.data.idx import read_idx
from tunelab.data.tabular import load_csv_arrays, load_npz_arrays
from tunelab.errors import ConfigError, DataError
from tunelab.registry import Registry

__all__ = ["RawData", "DATASETS"]

DATASETS = Registry("data.name")
SKIP_CHECKSUM = "TUNELAB_SKIP_CHECKSUM"  # set: use MNIST-format files whose sha256 is not the published one


@dataclass(frozen=True)
class RawData:
    """Unsplit, unscaled arrays of one source.

    x: float32 (N, C, H, W) images or (N, D) vectors, or uint8 images (byte pixels are
    converted to float32 by ``load_data`` in the scaling pass); y: int64 codes 0..K-1.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: Optional[np.ndarray]
    y_test: Optional[np.ndarray]
    num_classes: int
    is_image: bool = False
    flippable: bool = False            # a horizontal flip keeps the class
    pixel_max: Optional[float] = None  # images: 'unit' scaling divides by this

    @property
    def image_shape(self) -> Optional[tuple[int, ...]]:
        """(C, H, W) for images, None for vectors."""
        return tuple(self.x_train.shape[1:]) if self.is_image else None


# --------------------------------------------------------------------------- built-in sets

@DATASETS.register("digits")
def load_digits(cfg: DataConfig) -> RawData:
    """scikit-learn's bundled 8x8 digits (1797 images, values 0..16); no test split."""
    source = _digits_file()
    if source is None:  # not the layout we know: scikit-learn itself (1 s of imports)
        x, y = _decode_digits(None, "images"), _decode_digits(None, "target")
    else:  # from the cache, named by the file's sha256: no scikit-learn import
        sha = sha256_of(source)
        x, y = (decoded(source, f"{sha}-{part}", functools.partial(_decode_digits, part=part))
                for part in ("images", "target"))
    return RawData(np.asarray(x)[:, None], np.asarray(y, dtype=np.int64), None, None, num_classes=10,
                   is_image=True, pixel_max=16.0)  # x: (N, 1, 8, 8) float32


def _digits_file() -> Optional[Path]:
    """scikit-learn's digits.csv.gz, found without importing scikit-learn; None if not there."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


def _decode_digits(source: Optional[Path], part: str) -> np.ndarray:
    """The digits' images (N, 8, 8) as float32, or their targets as int64, from scikit-learn."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    return d.images.astype(np.float32) if part == "images" else d.target.astype(np.int64)


def _load_idx_set(name: str, cfg: DataConfig, flippable: bool) -> RawData:
    """MNIST-format set from ``data_dir(cfg.dir)/name/``: 60000 + 10000 images of 28x28."""
    folder = data_dir(cfg.dir) / name
    for fname, _ in FILES[name]:
        if not (folder / fname).is_file():
            raise DataError(f"{name}: file {folder / fname} is missing; run `tunelab datasets "
                            f"download {name} --dir {folder.parent}` or set {ENV_VAR}")
    shas = {fname: sha256_of(folder / fname) for fname, _ in FILES[name]}  # 18 ms for MNIST's 4 files
    bad = [fname for fname, published in FILES[name] if shas[fname] != published]
    if bad and not os.environ.get(SKIP_CHECKSUM):  # a file that is not the published one is not trained on
        raise DataError(f"{name}: file {folder / bad[0]} does not match its published sha256; "
                        f"re-download with `{download_command(name, folder.parent)}` (or set "
                        f"{SKIP_CHECKSUM}=1 to use it anyway)")
    # decoded once, then memory-mapped from the cache named by the file's sha256 (data/cache.py)
    arrays = [decoded(folder / fname, shas[fname], read_idx) for fname, _ in FILES[name]]
    x_tr, y_tr, x_te, y_te = arrays
    for x, y, part in ((x_tr, y_tr, "train"), (x_te, y_te, "t10k")):
        if len(x) != len(y) or x.ndim != 3 or y.ndim != 1:
            raise DataError(f"{name}: {part} images {x.shape} do not match labels {y.shape} "
                            f"in {folder}; re-download with `{download_command(name, folder.parent)}`")
        if y.size and int(y.max()) >= 10:
            raise DataError(f"{name}: {part} labels go up to {int(y.max())} in {folder}; expected 0..9")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(f"{name}: train images are {x_tr.shape[1:]} but test images {x_te.shape[1:]} in {folder}")
    # pixels stay uint8 (N, 1, 28, 28) here: load_data converts them while scaling, after
    # the split, which saves two float32 copies of 188 MB
    return RawData(x_tr[:, None], y_tr.astype(np.int64), x_te[:, None], y_te.astype(np.int64),
                   num_classes=10,
                   is_image=True, flippable=flippable, pixel_max=255.0)


@DATASETS.register("mnist")
def load_mnist(cfg: DataConfig) -> RawData:
    """MNIST handwritten digits from the IDX .gz files; a flip changes the class."""
    return _load_idx_set("mnist", cfg, flippable=False)


@DATASETS.register("fashion-mnist")
def load_fashion_mnist(cfg: DataConfig) -> RawData:
    """Fashion-MNIST article images from the IDX .gz files; a flip keeps the class."""
    return _load_idx_set("fashion-mnist", cfg, flippable=True)


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, ...]:
    """Generate MNIST-1D once per process (offline, ~2 s); the arrays are made read-only."""
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset reseeds the global python and numpy RNGs: keep the caller's state
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    out = (d["x"].astype(np.float32), d["y"].astype(np.int64),
           d["x_test"].astype(np.float32), d["y_test"].astype(np.int64))
    for a in out:
        a.setflags(write=False)
    return out


@DATASETS.register("mnist1d")
def load_mnist1d(cfg: DataConfig) -> RawData:
    """MNIST-1D: 4000 + 1000 sequences of 40 values, generated by ``mnist1d.make_dataset``."""
    x_tr, y_tr, x_te, y_te = _mnist1d_arrays()
    return RawData(x_tr, y_tr, x_te, y_te, num_classes=10)


# --------------------------------------------------------------------------- user files

def _user_file(cfg: DataConfig) -> Path:
    if cfg.path is None:
        raise ConfigError(f"data.path is required for data.name={cfg.name!r}; "
                          f"set data.path=FILE.{cfg.name}")
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise DataError(f"data.path={cfg.path!r}: file {path} does not exist")
    return path


@DATASETS.register("csv")
def load_csv(cfg: DataConfig) -> RawData:
    """A csv file with a header row: numeric feature columns plus the ``data.target`` column."""
    x, y, k = load_csv_arrays(_user_file(cfg), cfg.target)
    return RawData(x, y, None, None, num_classes=k)


@DATASETS.register("npz")
def load_npz(cfg: DataConfig) -> RawData:
    """A .npz with arrays x, y (and optionally x_test, y_test); 3-d/4-d x are images."""
    x, y, x_te, y_te, k = load_npz_arrays(_user_file(cfg))
    is_image = x.ndim == 4
    # uint8 images are 0..255; other images are divided by their largest training value
    pixel_max = (255.0 if x.dtype == np.uint8 else float(max(x.max(), 1e-12))) if is_image else None
    x, x_te = (None if a is None else a.astype(np.float32) for a in (x, x_te))
    return RawData(x, y, x_te, y_te, num_classes=k, is_image=is_image, pixel_max=pixel_max)


@DATASETS.register("images")
def load_images(cfg: DataConfig) -> RawData:
    """Your folder of images (data.path): train/<class>/ (optional test/<class>/) or <class>/ folders.

    Decoded once by ``imagefolder.load_image_folder`` to uint8 (N, C, image_size, image_size),
    gray or RGB per data.color, and cached beside the images. augment.hflip is refused: nothing
    says whether a mirror image keeps your classes.
    """
    from tunelab.data.imagefolder import load_image_folder

    if cfg.path is None:
        raise ConfigError("data.path is required for data.name='images'; give the folder to read")
    d = load_image_folder(cfg.path, cfg.image_size, cfg.color)
    return RawData(d.x_train, d.y_train, d.x_test, d.y_test, num_classes=len(d.classes),
                   is_image=True, flippable=False, pixel_max=255.0)
