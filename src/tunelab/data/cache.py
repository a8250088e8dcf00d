"""Decoded datasets kept on disk: a source file is decoded once (gunzipped and parsed: 0.25 s for
MNIST), later loads memory-map the decoded array (an uncompressed ``.npy``: milliseconds).

A cached array is named by the sha256 of the source file's bytes, which the loader computes anyway
to check the published checksum: a changed source file has another name, so it is decoded afresh and
a stale array is never served. The folder is ``$TUNELAB_CACHE``, else ``~/.cache/tunelab/decoded``
(never the data folder: it may be shared or read-only); ``TUNELAB_CACHE=off`` turns caching off. A
cache that cannot be written (or a cached file that cannot be read) costs only the decoding.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> src = Path(tempfile.mkdtemp()) / "a.bin"; _ = src.write_bytes(b"\\x01\\x02")
    >>> decode = lambda p: np.frombuffer(p.read_bytes(), np.uint8)
    >>> decoded(src, sha256_of(src), decode, folder=Path(tempfile.mkdtemp())).tolist()
    [1, 2]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from tunelab.data.download import sha256_of

__all__ = ["CACHE_ENV", "cache_dir", "decoded", "sha256_of"]

CACHE_ENV = "TUNELAB_CACHE"


def cache_dir() -> Optional[Path]:
    """The folder of decoded arrays: ``$TUNELAB_CACHE``, else ~/.cache/tunelab/decoded; None when
    ``TUNELAB_CACHE=off``.

    Example:
        >>> import os; os.environ[CACHE_ENV] = "/tmp/c"; cache_dir()
        PosixPath('/tmp/c')
        >>> os.environ[CACHE_ENV] = "off"; cache_dir() is None
        True
        >>> del os.environ[CACHE_ENV]
    """
    chosen = os.environ.get(CACHE_ENV)
    if chosen == "off":
        return None
    return Path(chosen).expanduser() if chosen else Path.home() / ".cache" / "tunelab" / "decoded"


def decoded(source: Path, key: str, decode: Callable[[Path], np.ndarray],
            folder: Optional[Path] = None) -> np.ndarray:
    """``decode(source)``, from the cache when the array of these bytes is there: ``key`` is the
    source's sha256 (with a suffix when one file gives several arrays); a cached array comes back
    read-only (memory-mapped). ``folder``: the cache folder (default ``cache_dir()``)."""
    if not all(c.isalnum() or c in "-_" for c in key):
        raise ValueError(f"key={key!r}: a cache key is letters, digits, '-' and '_' (a sha256 and a suffix)")
    folder = folder if folder is not None else cache_dir()
    if folder is None:
        return decode(source)
    file = folder / f"{key}.npy"
    try:
        return np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):  # not there yet, or damaged: decoded (again) and written
        pass
    array = decode(source)
    _save(file, array)
    return array


def _save(file: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``file`` atomically (a reader never sees half a file); a folder that
    cannot be written is skipped: the cache is an optimization, the data is already in memory."""
    part = file.with_name(f".{file.name}.{os.getpid()}.part")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)
        os.replace(part, file)
    except OSError:
        try:
            part.unlink(missing_ok=True)
        except OSError:
            pass
