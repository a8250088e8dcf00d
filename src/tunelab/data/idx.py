"""Reader of IDX files (the MNIST format), gzipped or raw, straight into a NumPy array.

An IDX file starts with the magic ``0x00 0x00 <type> <ndim>``, then one big-endian uint32
per dimension, then the data. Only type ``0x08`` (unsigned byte) is read: it is the only
one MNIST and Fashion-MNIST use.

Example:
    >>> from tunelab.data.idx import read_idx
    >>> y = read_idx("mnist/train-labels-idx1-ubyte.gz")  # doctest: +SKIP
    >>> y.shape, y.dtype                                    # doctest: +SKIP
    ((60000,), dtype('uint8'))
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from tunelab.data.download import download_command
from tunelab.errors import DataError

__all__ = ["read_idx", "IDX_TYPES"]

# type byte -> name; only 0x08 is supported, the others are named in the error message
IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32",
             0x0D: "float32", 0x0E: "float64"}
_KNOWN_DIRS = ("mnist", "fashion-mnist")


def _fix_hint(path: Path) -> str:
    """How to get a good copy of ``path``: the download command where we know the dataset."""
    name = path.parent.name
    if name in _KNOWN_DIRS:
        return f"re-download with `{download_command(name, path.parent.parent)}`"
    return "replace it with a complete copy"


def _read_bytes(path: Path) -> bytes:
    """The decompressed content of ``path`` (gunzipped when its name ends in .gz)."""
    if not path.is_file():
        raise DataError(f"file {path} is missing; {_fix_hint(path)}")
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise DataError(f"file {path} is not a readable gzip file ({e}); "
                        f"{_fix_hint(path)}") from None


def _parse_header(path: Path, data: bytes) -> tuple[tuple[int, ...], int]:
    """Check the magic and return (dims, offset of the data)."""
    if len(data) < 4:
        raise DataError(f"file {path} is too short for an IDX header ({len(data)} bytes); "
                        f"{_fix_hint(path)}")
    zero0, zero1, kind, ndim = data[:4]
    if zero0 or zero1 or ndim == 0:
        magic = " ".join(f"0x{b:02x}" for b in data[:4])
        raise DataError(f"file {path} is not an IDX file: magic bytes {magic}, expected "
                        f"0x00 0x00 <type> <ndim>; {_fix_hint(path)}")
    if kind != 0x08:
        what = IDX_TYPES.get(kind, "unknown")
        raise DataError(f"file {path} holds IDX type 0x{kind:02x} ({what}); only type 0x08 "
                        f"(unsigned byte) is supported")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DataError(f"file {path} is truncated: its header declares {ndim} dimensions "
                        f"but holds {len(data)} bytes; {_fix_hint(path)}")
    return struct.unpack(f">{ndim}I", data[4:offset]), offset


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a read-only uint8 array shaped by its header.

    Raises DataError naming the file for a missing file, bad gzip, bad magic, an
    unsupported type, or a data length that does not match the header.

    Example:
        >>> x = read_idx("mnist/t10k-images-idx3-ubyte.gz")  # doctest: +SKIP
        >>> x.shape                                          # doctest: +SKIP
        (10000, 28, 28)
    """
    path = Path(path)
    data = _read_bytes(path)
    dims, offset = _parse_header(path, data)
    expected, found = math.prod(dims), len(data) - offset
    if found < expected:
        raise DataError(f"file {path} is truncated: expected {expected} bytes of data, "
                        f"found {found}; {_fix_hint(path)}")
    if found > expected:
        raise DataError(f"file {path} has {found - expected} bytes after the {expected} its "
                        f"header {dims} declares; {_fix_hint(path)}")
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=offset).reshape(dims)
