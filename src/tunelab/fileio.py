"""Every file tunelab writes, written atomically: a temporary file beside the target (named per
process, ``.<name>.<pid>.tmp``), flushed and fsynced, then renamed over it. A reader sees the old
file or the whole new one, never half of one; two processes never share a temporary file; a
failed write leaves no temporary file and is one line naming the path and the reason
(``WriteError``: no space left, read-only, permission denied, quota).

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_text(d / "a.txt", "hello")
    >>> (d / "a.txt").read_text(), sorted(p.name for p in d.iterdir())
    ('hello', ['a.txt'])
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from tunelab.errors import WriteError

__all__ = ["atomic_open", "write_text", "write_json", "save_figure", "torch_save", "why", "WriteError"]

_REASONS = {errno.ENOSPC: "no space left on the device", errno.EROFS: "the file system is read-only",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.EDQUOT: "disk quota exceeded", errno.EISDIR: "it is a directory",
            errno.ENOTDIR: "a parent is not a directory", errno.ENAMETOOLONG: "the name is too long"}


def why(error: OSError) -> str:
    """A short reason for an OSError (no space left, read-only, ...)."""
    return _REASONS.get(error.errno or -1) or (error.strerror or type(error).__name__).lower()


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", sync: bool = True, **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file for writing beside ``path``; when the block ends without an error it
    is fsynced (unless ``sync`` is False: files rewritten every epoch, whose loss in a power cut
    costs nothing) and renamed over ``path``. An OSError is a WriteError naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as e:
        if _chained(e, KeyboardInterrupt):  # a Ctrl-C inside a writer that turned it into another
            raise KeyboardInterrupt from None  # error (torch.save's zip writer): the interrupt it was
        # torch.save turns a full disk into a RuntimeError about its zip writer
        cause = _chained(e, OSError) if isinstance(e, (OSError, RuntimeError)) else None
        if cause is None:
            raise
        raise WriteError(f"cannot write {str(path)!r}: {why(cause)}") from None
    finally:
        try:
            tmp.unlink()
        except OSError:  # renamed already, or never created
            pass


def _chained(error: BaseException | None, kind: type) -> Any:
    """The ``kind`` exception ``error`` is, or was raised while handling (a chain of at most 5)."""
    for _ in range(5):
        if error is None or isinstance(error, kind):
            return error
        error = error.__cause__ or error.__context__
    return None


def write_text(path: str | Path, text: str, sync: bool = True) -> None:
    with atomic_open(path, "w", sync, encoding="utf-8", newline="") as f:
        f.write(text)


def write_json(path: str | Path, payload: Any, indent: int | None = 1, default: Any = None) -> None:
    import json

    write_text(path, json.dumps(payload, indent=indent, default=default) + "\n")


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> None:
    """``fig.savefig`` to ``path`` atomically (the format from its suffix)."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png", **kwargs)


def torch_save(obj: Any, path: str | Path) -> None:
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
