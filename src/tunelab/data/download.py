"""Where datasets live on disk, and how to fetch them with checksum verification.

Layout of a data directory: ``<dir>/mnist/<4 .gz files>``, ``<dir>/fashion-mnist/<4 .gz
files>`` (the original IDX distribution). The directory is ``data.dir`` when given, else
``$TUNELAB_DATA``, else ``~/.cache/tunelab``.

Example:
    >>> from tunelab.data.download import data_dir, download, verify
    >>> root = data_dir(None)                       # doctest: +SKIP
    >>> paths = download("mnist", root)             # doctest: +SKIP
    >>> verify("mnist", root)["t10k-labels-idx1-ubyte.gz"]  # doctest: +SKIP
    'ok'
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional, Sequence

from tunelab.errors import ConfigError, DataError

__all__ = ["FILES", "MIRRORS", "ENV_VAR", "data_dir", "download_command", "sha256_of", "download",
           "verify"]

ENV_VAR = "TUNELAB_DATA"
_IDX_NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
FILES: dict[str, list[tuple[str, str]]] = {
    "mnist": list(zip(_IDX_NAMES, [
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"])),
    "fashion-mnist": list(zip(_IDX_NAMES, [
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"])),
}
MIRRORS: dict[str, list[str]] = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}
# progress(file name, bytes received so far, total bytes or None when the server won't say)
Progress = Callable[[str, int, Optional[int]], None]
_CHUNK = 1 << 16


def data_dir(cfg_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: ``cfg_dir`` if given, else ``$TUNELAB_DATA``, else ~/.cache/tunelab.

    Example:
        >>> data_dir("/tmp/d")
        PosixPath('/tmp/d')
    """
    chosen = cfg_dir or os.environ.get(ENV_VAR) or Path.home() / ".cache" / "tunelab"
    return Path(chosen).expanduser()


def download_command(name: str, root: str | os.PathLike) -> str:
    """The ``tunelab datasets download`` command that fills ``root``; ``--dir`` only when
    ``root`` is not the default data directory.

    Example:
        >>> download_command("mnist", "/tmp/d")
        'tunelab datasets download mnist --dir /tmp/d'
    """
    root = Path(root).expanduser()
    if root.resolve() == data_dir(None).resolve():
        return f"tunelab datasets download {name}"
    return f"tunelab datasets download {name} --dir {root}"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _files(name: str, only: Sequence[str] | None) -> list[tuple[str, str]]:
    """The (file, sha256) table of ``name``, optionally restricted to the files ``only``."""
    if name not in FILES:
        raise ConfigError(f"dataset {name!r} cannot be downloaded; choose one of {sorted(FILES)}")
    table = FILES[name]
    unknown = sorted(set(only or []) - {f for f, _ in table})
    if unknown:
        raise ConfigError(f"files={unknown} are not part of {name!r}; choose from "
                          f"{[f for f, _ in table]}")
    return [(f, h) for f, h in table if only is None or f in only]


def verify(name: str, root: str | os.PathLike) -> dict[str, str]:
    """Status of each file of ``name`` under ``root/name/``: 'ok', 'missing' or 'bad checksum'.

    Example:
        >>> verify("mnist", "/nonexistent")["train-labels-idx1-ubyte.gz"]
        'missing'
    """
    folder = Path(root) / name
    status = {}
    for fname, sha in _files(name, None):
        path = folder / fname
        status[fname] = ("missing" if not path.is_file()
                         else "ok" if sha256_of(path) == sha else "bad checksum")
    return status


def _fetch(url: str, part: Path, fname: str, timeout: float, progress: Progress | None) -> str:
    """Stream ``url`` into ``part``; return the sha256 of what was written."""
    digest, done = hashlib.sha256(), 0
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:
        total = resp.headers.get("Content-Length")
        total = int(total) if total is not None else None
        while chunk := resp.read(_CHUNK):
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(fname, done, total)
    return digest.hexdigest()


def _why(error: Exception) -> str:
    """A short reason for a failed fetch: 'HTTP 404 File not found', 'timed out', ..."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    return str(getattr(error, "reason", error))


def _try_mirror(url: str, sha: str, target: Path, timeout: float,
                progress: Progress | None) -> str | None:
    """Fetch ``url`` into ``target`` through a .part file of its own (two downloads into one folder
    never share one); None on success, else why not."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        os.close(fd)
    except OSError as e:
        from tunelab.fileio import why

        raise DataError(f"cannot write into {str(target.parent)!r}: {why(e)}") from None
    part = Path(name)
    try:
        actual = _fetch(url, part, target.name, timeout, progress)
    except (urllib.error.URLError, OSError, ValueError) as e:
        part.unlink(missing_ok=True)
        return _why(e)
    if actual != sha:
        part.unlink(missing_ok=True)
        return f"bad checksum: sha256 {actual}, expected {sha}"
    os.replace(part, target)  # atomic: a visible file is always a complete, verified one
    return None


def _download_one(fname: str, folder: Path, sha: str, mirrors: Sequence[str],
                  timeout: float, progress: Progress | None) -> Path:
    """Try each mirror in order until one serves ``fname`` with the right sha256."""
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + fname
        why = _try_mirror(url, sha, folder / fname, timeout, progress)
        if why is None:
            return folder / fname
        failures.append(f"{url} ({why})")
    what = ("checksum mismatch for" if any("bad checksum" in f for f in failures)
            else "could not download")
    raise DataError(f"{what} {fname} from any mirror (nothing kept): {'; '.join(failures)}; "
                    f"check the network or copy a good file into {folder}")


def download(name: str, dest_dir: str | os.PathLike, mirrors: Sequence[str] | None = None,
             progress: Progress | None = None, files: Sequence[str] | None = None,
             timeout: float = 30.0) -> list[Path]:
    """Fetch dataset ``name`` into ``dest_dir/name/``; return the paths of its files.

    Files already present with the right sha256 are kept. Each missing one is fetched
    from ``mirrors`` (default ``MIRRORS[name]``) in order, through a ``.part`` file of its own, and
    verified; ``files`` restricts the work to some of the dataset's file names.

    Example:
        >>> download("mnist", "/tmp/data", files=["t10k-labels-idx1-ubyte.gz"])  # doctest: +SKIP
        [PosixPath('/tmp/data/mnist/t10k-labels-idx1-ubyte.gz')]
    """
    table = _files(name, files)
    folder = Path(dest_dir).expanduser() / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from tunelab.fileio import why

        raise DataError(f"cannot create the data folder {str(folder)!r}: {why(e)}") from None
    mirrors = list(MIRRORS[name] if mirrors is None else mirrors)
    paths = []
    for fname, sha in table:
        path = folder / fname
        if not (path.is_file() and sha256_of(path) == sha):
            path = _download_one(fname, folder, sha, mirrors, timeout, progress)
        paths.append(path)
    return paths
