"""Readers of user files for the csv and npz sources (NumPy and the standard library only).

Labels of any kind (numbers or strings) are mapped to 0..K-1 in sorted order.

Example:
    >>> import numpy as np
    >>> from tunelab.data.tabular import encode_labels
    >>> encode_labels(np.array(["cat", "dog", "cat"]))
    (array([0, 1, 0]), 2)
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import numpy as np

from tunelab.errors import DataError

__all__ = ["encode_labels", "load_csv_arrays", "load_npz_arrays"]


def encode_labels(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Map label values to int64 codes 0..K-1 (numbers sorted as numbers); return (codes, K).

    Example:
        >>> encode_labels(np.array(["10", "2", "10"]))
        (array([1, 0, 1]), 2)
    """
    try:
        values = np.asarray(values).astype(np.float64)  # "10" sorts after "2"
    except ValueError:
        pass  # genuine strings: sorted as strings
    classes, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.int64).reshape(-1), len(classes)


# --------------------------------------------------------------------------- csv

def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """Header names and the body as a (N, columns) string array; blank lines skipped."""
    with open(path, newline="") as f:
        rows = [(i + 1, r) for i, r in enumerate(csv.reader(f)) if r]
    if len(rows) < 2:
        raise DataError(f"file {path} has no data rows; expected a header row and then data")
    header = [h.strip() for h in rows[0][1]]
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(f"file {path} line {line} has {len(row)} fields but the header has "
                            f"{len(header)}; every row needs one value per column")
    return header, np.array([r for _, r in rows[1:]], dtype=str)


def _numeric(path: Path, name: str, column: np.ndarray) -> np.ndarray:
    """A string column as float64, or DataError naming the column and the first bad value."""
    try:
        out = column.astype(np.float64)
    except ValueError:
        out = None
    if out is None or not np.isfinite(out).all():
        bad = next(v for v in column if not _is_finite_number(v))
        raise DataError(f"column {name!r} of {path} is not numeric (value {str(bad)!r}); encode "
                        f"it as numbers, fill missing values, or remove the column")
    return out


def _is_finite_number(text: str) -> bool:
    try:
        return bool(np.isfinite(float(text)))
    except ValueError:
        return False


def load_csv_arrays(path: Path, target: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Read a csv with a header: returns (x float32 (N, D), y int64 (N,), number of classes).

    Example:
        >>> x, y, k = load_csv_arrays(Path("iris.csv"), "species")  # doctest: +SKIP
    """
    header, body = _read_csv(path)
    if target not in header:
        raise DataError(f"data.target={target!r} is not a column of {path}; "
                        f"columns are {header}")
    t = header.index(target)
    feats = [_numeric(path, name, body[:, j]) for j, name in enumerate(header) if j != t]
    if not feats:
        raise DataError(f"file {path} has only the target column {target!r}; add feature columns")
    y, k = encode_labels(body[:, t])
    return np.stack(feats, axis=1).astype(np.float32), y, k


# --------------------------------------------------------------------------- npz

def _as_input(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    """(N, D) vectors or (N, C, H, W) images; (N, H, W) gets a channel axis."""
    if not np.issubdtype(x.dtype, np.number) or x.ndim not in (2, 3, 4):
        raise DataError(f"array {key!r} of {path} has dtype {x.dtype} and shape {x.shape}; "
                        f"expected numbers shaped (N, D), (N, H, W) or (N, C, H, W)")
    return x[:, None] if x.ndim == 3 else x


def _check_pair(path: Path, xk: str, x: np.ndarray, y: np.ndarray) -> None:
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"array {xk!r} of {path} has {len(x)} rows but its labels have shape "
                        f"{y.shape}; expected ({len(x)},)")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays x, y (and x_test, y_test when present) of a .npz archive."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"file {path} is not a readable .npz archive ({e})") from None
    with archive as z:
        keys = sorted(z.files)
        if "x" not in keys or "y" not in keys or ("x_test" in keys) != ("y_test" in keys):
            raise DataError(f"file {path} needs arrays 'x' and 'y' (and 'x_test' with "
                            f"'y_test', or neither); found keys {keys}")
        return {k: z[k] for k in ("x", "y", "x_test", "y_test") if k in keys}


def load_npz_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray],
                                         Optional[np.ndarray], int]:
    """Read x, y (and optionally x_test, y_test) from a .npz: (x, y, x_test, y_test, K).

    x keeps its dtype (the caller scales uint8 images by 255); labels are int64 codes.

    Example:
        >>> x, y, xt, yt, k = load_npz_arrays(Path("set.npz"))  # doctest: +SKIP
    """
    arrays = _read_npz(path)
    x, y = _as_input(path, "x", arrays["x"]), arrays["y"]
    _check_pair(path, "x", x, y)
    if "x_test" not in arrays:
        codes, k = encode_labels(y)
        return x, codes, None, None, k
    x_te, y_te = _as_input(path, "x_test", arrays["x_test"]), arrays["y_test"]
    _check_pair(path, "x_test", x_te, y_te)
    if x_te.shape[1:] != x.shape[1:]:
        raise DataError(f"array 'x_test' of {path} has examples of shape {x_te.shape[1:]}, "
                        f"'x' has {x.shape[1:]}; they must match")
    codes, k = encode_labels(np.concatenate([y, y_te]))
    return x, codes[:len(y)], x_te, codes[len(y):], k
