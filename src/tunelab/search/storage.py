"""Opening Optuna storage: a bad ``--storage`` URL is a one-line user error, not a traceback.

Example:
    >>> with storage_errors("sqlite:///:memory:"):
    ...     pass
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from tunelab.errors import ConfigError

__all__ = ["storage_errors"]


@contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn SQLAlchemy's errors on opening ``url`` (unknown dialect, missing driver, no such
    file or server) into a ConfigError naming --storage and the URL."""
    import sqlalchemy.exc

    try:
        yield
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.OperationalError, ImportError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--storage {url!r} cannot be opened ({reason}); give an SQLAlchemy URL "
                          f"such as sqlite:///tunelab.db or postgresql://user:password@host/db") from None
