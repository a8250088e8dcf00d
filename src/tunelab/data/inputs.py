"""Inputs for a trained model read from files: what ``tunelab predict`` and ``evaluate --data`` read.

Arrays come back *raw*, in the units of the run's source (digits pixels 0..16, MNIST pixels
0..255, a csv file's own numbers), so that ``LoadedRun.preprocess`` can apply the scaling the run
fitted on its training set. Labels come back as their values ("cat", 3) and ``label_codes`` maps
them to the run's class indices: a file with only some of the classes must not renumber them.

Example:
    >>> label_text(3.0), label_text("cat"), label_text(2.5)
    ('3', 'cat', '2.5')
    >>> label_codes(["3", 1.0], ["1", "3", "10"], "y").tolist()
    [1, 0]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from tunelab.config import DataConfig
from tunelab.data.imagefolder import IMAGE_SUFFIXES, decode_image, image_classes
from tunelab.data.tabular import _numeric, _read_csv  # the csv source's own reader and its errors
from tunelab.errors import DataError

__all__ = ["Inputs", "CLASS_NAMES", "IMAGE_SUFFIXES", "label_text", "label_codes", "source_labels", "fit_shape",
           "read_csv_inputs", "read_npz_inputs", "read_images", "read_inputs"]

_DIGITS = [str(i) for i in range(10)]
CLASS_NAMES: dict[str, list[str]] = {
    "digits": _DIGITS, "mnist": _DIGITS, "mnist1d": _DIGITS,
    # the order of Fashion-MNIST's label codes 0..9 (Xiao et al. 2017, README of the data set)
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
}


@dataclass
class Inputs:
    """Raw inputs of a model: ``x`` float32 (N, *input_shape) in the source's units, ``names`` one
    per example (a row index or a file), ``labels`` their label values or None."""

    x: np.ndarray
    names: list[str]
    labels: Optional[np.ndarray] = None


def label_text(value: Any) -> str:
    """A label value as its class name: integral numbers without a decimal point."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def _values_as_names(values: np.ndarray) -> list[str]:
    """Sorted class names of label values, ordered as ``tabular.encode_labels`` codes them."""
    try:
        values = np.asarray(values).astype(np.float64)  # numbers sort as numbers ("10" after "2")
    except ValueError:
        pass
    return [label_text(v) for v in np.unique(values)]


def label_codes(values: Sequence[Any], names: Sequence[str], where: str) -> np.ndarray:
    """Class indices of label ``values`` by the run's class ``names``; an unknown label is one
    DataError naming ``where`` (the file or argument they came from)."""
    lookup = {n: i for i, n in enumerate(names)}
    codes = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        code = lookup.get(str(v).strip())
        if code is None:
            try:
                code = lookup.get(label_text(float(str(v))))  # "3.0" is the class "3"
            except ValueError:
                pass
        if code is None:
            shown = list(names) if len(names) <= 12 else [*names[:12], "..."]
            raise DataError(f"label {str(v)!r} of {where} is not a class of the run; its classes are {shown}")
        codes[i] = code
    return codes


def source_labels(cfg: DataConfig) -> tuple[Optional[list[str]], Optional[list[str]]]:
    """(class names, feature names) of a source: the built-in sets' names, a csv file's label
    values and feature columns, a npz file's label values, an image folder's class folders; None
    where a source has none."""
    if cfg.name == "csv" and cfg.path:
        header, body = _read_csv(Path(cfg.path).expanduser())
        if cfg.target not in header:  # the csv source says so, with the columns
            return None, None
        t = header.index(cfg.target)
        return _values_as_names(body[:, t]), [h for j, h in enumerate(header) if j != t]
    if cfg.name == "npz" and cfg.path:
        with np.load(Path(cfg.path).expanduser(), allow_pickle=False) as z:
            ys = [z[k] for k in ("y", "y_test") if k in z.files]
        return _values_as_names(np.concatenate(ys)), None
    if cfg.name == "images" and cfg.path:
        return image_classes(cfg.path), None
    return CLASS_NAMES.get(cfg.name), None


# --------------------------------------------------------------------------- files

def _shape_error(where: str, got: tuple, shape: tuple[int, ...]) -> DataError:
    return DataError(f"{where} has examples of shape {got}; the model takes {shape} "
                     f"({int(np.prod(shape))} values)")


def fit_shape(x: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    """(N, *shape) from (N, *shape), (N, H, W) for one-channel images or flat (N, prod(shape));
    any other shape is one DataError naming ``where``.

    Example:
        >>> fit_shape(np.zeros((5, 8, 8)), (1, 8, 8), "x").shape
        (5, 1, 8, 8)
    """
    if tuple(x.shape[1:]) == tuple(shape):
        return x
    if x.ndim == 3 and len(shape) == 3 and shape[0] == 1 and tuple(x.shape[1:]) == tuple(shape[1:]):
        return x[:, None]
    if x.ndim == 2 and x.shape[1] == int(np.prod(shape)):
        return x.reshape(len(x), *shape)
    raise _shape_error(where, tuple(x.shape[1:]), shape)


def _listed(names: Sequence[str]) -> str:
    return str(list(names)) if len(names) <= 8 else f"[{', '.join(names[:8])}, ...]"


def read_csv_inputs(path: str | Path, shape: tuple[int, ...], target: str = "label",
                    features: Optional[Sequence[str]] = None) -> Inputs:
    """A csv with a header row: its feature columns (every column but ``target``) as raw inputs
    of ``shape``, the ``target`` column (optional) as labels.

    ``features``: the run's feature columns (a csv-trained run); they are matched by name, in any
    order. Without them (a run on images or vectors) the columns are taken in file order and
    their count must be the model's input size.
    """
    path = Path(path)
    header, body = _read_csv(path)
    labels = body[:, header.index(target)] if target in header else None
    cols = [h for h in header if h != target]
    if features is not None:
        if sorted(cols) != sorted(features):
            raise DataError(f"{path} has {len(cols)} feature columns {_listed(cols)}; the run was "
                            f"trained on {len(features)} columns {_listed(list(features))}")
        cols = list(features)
    elif len(cols) != int(np.prod(shape)):
        raise DataError(f"{path} has {len(cols)} feature columns (besides {target!r}); the model "
                        f"takes {int(np.prod(shape))} values per example, shaped {shape}")
    x = np.stack([_numeric(path, c, body[:, header.index(c)]) for c in cols], axis=1)
    x = x.astype(np.float32).reshape(len(x), *shape)
    return Inputs(x, [str(i) for i in range(len(x))], labels)


def read_npz_inputs(path: str | Path, shape: tuple[int, ...], key: str = "x") -> Inputs:
    """Array ``key`` (default ``x``) of a .npz as raw inputs of ``shape`` ((N, H, W) and flat rows
    are reshaped); ``y`` (or ``y_test`` beside ``x_test``) as labels when present."""
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"file {path} is not a readable .npz archive ({e})") from None
    with archive as z:
        if key not in z.files:
            raise DataError(f"file {path} has no array {key!r}; found keys {sorted(z.files)}")
        x, label_key = z[key], "y" if key == "x" else key.replace("x", "y", 1)
        labels = z[label_key] if label_key in z.files else None
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"array {key!r} of {path} has dtype {x.dtype}; expected numbers")
    x = fit_shape(x, shape, f"array {key!r} of {path}").astype(np.float32)
    if labels is not None and labels.shape != (len(x),):
        raise DataError(f"array {label_key!r} of {path} has shape {labels.shape}; expected ({len(x)},)")
    return Inputs(x, [str(i) for i in range(len(x))], labels)


def read_images(paths: Sequence[str | Path], shape: tuple[int, ...], pixel_max: float,
                invert: bool = False) -> Inputs:
    """Image files as raw inputs of ``shape`` (C, H, W): gray (C=1) or RGB (C=3), resized to H x W
    (the aspect ratio is not kept) by ``imagefolder.decode_image`` as the images source resizes,
    pixel values 0..255 mapped to the source's 0..``pixel_max``.
    ``invert``: dark strokes on a light background become light on dark, as MNIST draws them."""
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise DataError(f"image files need a model of 1- or 3-channel images; the model takes {shape}")
    out = [decode_image(p, shape[0], shape[1:]) for p in paths]  # the images source's own decoder
    x = np.stack(out).astype(np.float32)  # (N, C, H, W), 0..255
    if invert:
        x = 255.0 - x
    return Inputs(x * np.float32(pixel_max / 255.0), [str(p) for p in paths])


def read_inputs(paths: Sequence[str | Path], shape: tuple[int, ...], *, target: str = "label",
                features: Optional[Sequence[str]] = None, pixel_max: Optional[float] = None,
                invert: bool = False) -> Inputs:
    """One .csv, one .npz, or image files (a folder: its images, sorted), by file suffix."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError("inputs: give a .csv, a .npz or image files")
    for p in paths:
        if not p.exists():
            raise DataError(f"input {str(p)!r} does not exist")
    if len(paths) == 1 and paths[0].is_dir():
        folder = paths[0]
        paths = sorted(q for q in folder.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise DataError(f"folder {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    suffixes = {p.suffix.lower() for p in paths}
    if len(paths) == 1 and suffixes <= {".csv", ".npz"}:
        if suffixes == {".csv"}:
            return read_csv_inputs(paths[0], shape, target, features)
        return read_npz_inputs(paths[0], shape)
    bad = [str(p) for p in paths if p.suffix.lower() not in IMAGE_SUFFIXES]
    if bad:
        raise DataError(f"input {bad[0]!r} is not an image ({', '.join(IMAGE_SUFFIXES)}); give one .csv, "
                        f"one .npz, or image files")
    if pixel_max is None:
        raise DataError(f"image files need a model of images; the model takes vectors of shape {shape}")
    return read_images(paths, shape, pixel_max, invert)
