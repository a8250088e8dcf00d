"""Opening Optuna storage: a bad ``--storage`` URL is a one-line user error, not a traceback.

Example:
    >>> with storage_errors("sqlite:///:memory:"):
    ...     pass
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from tunelab.errors import ConfigError

__all__ = ["storage_errors", "missing_sqlite_file"]


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


def missing_sqlite_file(url: str) -> Optional[str]:
    """The database file of a ``sqlite:///`` URL when it does not exist, else None.

    Commands that only read a study check this first: opening a missing SQLite file would
    create an empty database as a side effect.

    Example:
        >>> missing_sqlite_file("sqlite:///no/such/dir/tunelab.db")
        'no/such/dir/tunelab.db'
        >>> missing_sqlite_file("postgresql://host/db") is None
        True
    """
    from sqlalchemy.engine import make_url
    import sqlalchemy.exc

    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return None  # not a URL at all: opening it reports that
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return None if Path(parsed.database).exists() else parsed.database
