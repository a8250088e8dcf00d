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
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [(i + 1, r) for i, r in enumerate(csv.reader(f)) if r]
    except UnicodeDecodeError as e:
        raise DataError(f"file {path} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except csv.Error as e:
        raise DataError(f"file {path} is not a readable csv ({e})") from None
    if len(rows) < 2:
        raise DataError(f"file {path} has no data rows; expected a header row and then data")
    header = [h.strip() for h in rows[0][1]]
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(f"file {path} line {line} has {len(row)} fields but the header has "
                            f"{len(header)}; every row needs one value per column")
    try:
        return header, np.array([r for _, r in rows[1:]], dtype=str)
    except MemoryError:  # one huge cell widens every cell of the array to its length
        longest = max(len(c) for _, r in rows[1:] for c in r)
        raise DataError(f"file {path} does not fit in memory as a table (its longest cell has {longest:,} "
                        f"characters); expected short numeric cells") from None


def _columns(header: list[str]) -> str:
    """"columns are [...]" when the first row looks like a csv header (short names of letters,
    digits and ``_ .-``); otherwise a data file's first line is not echoed into an error."""
    import re

    if 0 < len(header) <= 50 and all(re.fullmatch(r"[\w .\-]{1,40}", h) for h in header):
        return f"columns are {header}"
    return f"its first row ({len(header)} fields) does not look like a csv header"


def _numeric(path: Path, name: str, column: np.ndarray) -> np.ndarray:
    """A string column as float64, or DataError naming the column and the first bad value."""
    try:
        out = column.astype(np.float64)
    except ValueError:
        out = None
    if out is None or not np.isfinite(out).all():
        bad = next(v for v in column if not _is_finite_number(v))
        shown = repr(str(bad)) if len(str(bad)) <= 20 else f"of {len(str(bad))} characters"
        raise DataError(f"column {str(name)[:40]!r} of {path} is not numeric (value {shown}); encode "
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
        raise DataError(f"data.target={target!r} is not a column of {path}; {_columns(header)}")
    t = header.index(target)
    feats = [_numeric(path, name, body[:, j]) for j, name in enumerate(header) if j != t]
    if not feats:
        raise DataError(f"file {path} has only the target column {target!r}; add feature columns")
    y, k = encode_labels(_labels(path, target, body[:, t]))
    _two_classes(path, k)
    return np.stack(feats, axis=1).astype(np.float32), y, k


def _labels(path: Path, name: str, values: np.ndarray) -> np.ndarray:
    """``values`` when every label is set: an empty cell or a NaN is not a class."""
    flat = np.asarray(values).reshape(-1)
    if flat.dtype.kind in "fc":
        bad = ~np.isfinite(flat)
    elif flat.dtype.kind in "US":
        bad = np.char.strip(flat.astype(str)) == ""
        bad |= np.isin(np.char.lower(np.char.strip(flat.astype(str))), ["nan", "na", "null", "none"])
    else:
        bad = np.zeros(len(flat), dtype=bool)
    if bad.any():
        raise DataError(f"{int(bad.sum())} labels in {name!r} of {path} are empty or not a number "
                        f"(first at row {int(np.argmax(bad)) + 1}); fill or drop those rows")
    return values


def _two_classes(path: Path, k: int) -> None:
    if k < 2:
        raise DataError(f"file {path} has {k} label class; a classifier needs at least 2")


# --------------------------------------------------------------------------- npz

def _as_input(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    """(N, D) vectors or (N, C, H, W) images; (N, H, W) gets a channel axis. Real numbers only,
    every one finite."""
    if (not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating)
            or x.ndim not in (2, 3, 4)):
        raise DataError(f"array {key!r} of {path} has dtype {x.dtype} and shape {x.shape}; "
                        f"expected real numbers shaped (N, D), (N, H, W) or (N, C, H, W)")
    if len(x) == 0 or x[0].size == 0:
        raise DataError(f"array {key!r} of {path} has shape {x.shape}: no examples or no features; "
                        f"expected at least one row of at least one number")
    if np.issubdtype(x.dtype, np.floating):
        rows = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if rows.any():
            raise DataError(f"array {key!r} of {path} has NaN or infinite values in {int(rows.sum())} rows "
                            f"(first row {int(np.argmax(rows))}); fill or drop them")
    return x[:, None] if x.ndim == 3 else x


def _check_pair(path: Path, xk: str, x: np.ndarray, y: np.ndarray) -> None:
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"array {xk!r} of {path} has {len(x)} rows but its labels have shape "
                        f"{y.shape}; expected ({len(x)},)")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays x, y (and x_test, y_test when present) of a .npz archive."""
    import zipfile

    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"file {path} is not a readable .npz archive ({str(e)[:120] or type(e).__name__})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"file {path} holds one .npy array, not a .npz archive; save x and y with "
                        f"numpy.savez")
    with archive as z:
        keys = sorted(z.files)
        if "x" not in keys or "y" not in keys or ("x_test" in keys) != ("y_test" in keys):
            raise DataError(f"file {path} needs arrays 'x' and 'y' (and 'x_test' with "
                            f"'y_test', or neither); found keys {keys[:20]}")
        out = {}
        for k in ("x", "y", "x_test", "y_test"):
            if k not in keys:
                continue
            try:
                out[k] = z[k]
            except ValueError as e:  # object arrays need pickle, which is never loaded
                raise DataError(f"array {k!r} of {path} cannot be read without pickle ({str(e)[:80]}); "
                                f"store numbers, not Python objects") from None
            except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
                raise DataError(f"array {k!r} of {path} is truncated or corrupt "
                                f"({str(e)[:80] or type(e).__name__})") from None
            except MemoryError as e:  # a header may claim any shape
                raise DataError(f"array {k!r} of {path} does not fit in memory ({str(e)[:120]})") from None
        return out


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
        codes, k = encode_labels(_labels(path, "y", y))
        _two_classes(path, k)
        return x, codes, None, None, k
    x_te, y_te = _as_input(path, "x_test", arrays["x_test"]), arrays["y_test"]
    _check_pair(path, "x_test", x_te, y_te)
    if x_te.shape[1:] != x.shape[1:]:
        raise DataError(f"array 'x_test' of {path} has examples of shape {x_te.shape[1:]}, "
                        f"'x' has {x.shape[1:]}; they must match")
    codes, k = encode_labels(np.concatenate([_labels(path, "y", y), _labels(path, "y_test", y_te)]))
    _two_classes(path, k)
    return x, codes[:len(y)], x_te, codes[len(y):], k
