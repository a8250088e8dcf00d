"""Opening Optuna storage: a bad ``storage`` URL is a one-line user error, not a traceback.

``tunelab.tune()`` keeps its studies in memory unless it is given a storage (a URL or an Optuna
storage object); the CLI passes ``sqlite:///tunelab.db`` by default.

Example:
    >>> with storage_errors("sqlite:///:memory:"):
    ...     pass
    >>> _, where = resolve_storage(None); where
    'in memory (pass storage= to keep it)'
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

from tunelab.errors import ConfigError

__all__ = ["storage_errors", "missing_sqlite_file", "reset_session", "resolve_storage", "delete_studies", "IN_MEMORY",
           "StorageLike"]

IN_MEMORY = "in memory (pass storage= to keep it)"
StorageLike = Union[str, "optuna.storages.BaseStorage", None]


@contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn SQLAlchemy's errors on opening ``url`` (unknown dialect, missing driver, no such
    file or server) into a ConfigError naming ``storage`` and the URL."""
    import sqlalchemy.exc

    try:
        yield
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.OperationalError, ImportError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"storage={url!r} cannot be opened ({reason}); give an SQLAlchemy URL "
                          f"such as sqlite:///tunelab.db or postgresql://user:password@host/db") from None


def reset_session(study) -> None:
    """Roll back and drop the storage's database session after an interrupt.

    A Ctrl-C or SIGTERM that lands inside a storage write (a pruner report mid-epoch) leaves
    SQLAlchemy's session in a failed transaction that Optuna does not roll back (it only does
    for SQLAlchemy's own errors), so every later write would fail with "An exception is raised
    during the commit", and the connection may still hold SQLite's write lock; the driver calls
    this before it marks the interrupted trials.

    Example:
        >>> import optuna
        >>> reset_session(optuna.create_study())  # in-memory storage: nothing to reset
    """
    storage = getattr(study, "_storage", None)
    backend = getattr(storage, "_backend", storage)
    session = getattr(backend, "scoped_session", None)
    if session is None:
        return
    try:
        session.rollback()
    except Exception:  # the session may be unusable; removing it is what matters
        pass
    session.remove()
    engine = getattr(backend, "engine", None)
    if engine is not None:  # a connection cut inside a query or commit can still hold SQLite's lock
        import gc           # ("database is locked" for the next writer): close every pooled connection,
        gc.collect()        # and let go of one the pool dropped but a cursor still held
        engine.dispose()


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


def resolve_storage(storage: StorageLike) -> tuple[object, str]:
    """``(what optuna.create_study takes, where it is in words)``: None is a fresh in-memory
    storage; a URL or an Optuna storage object is used as it is."""
    import optuna

    if storage is None:
        return optuna.storages.InMemoryStorage(), IN_MEMORY
    if isinstance(storage, str):
        return storage, storage
    if isinstance(storage, optuna.storages.BaseStorage):
        kind = "in memory" if isinstance(storage, optuna.storages.InMemoryStorage) else type(storage).__name__
        return storage, f"{kind} (the storage object you passed)"
    raise ConfigError(f"storage={storage!r} is not allowed; give an SQLAlchemy URL such as "
                      f"sqlite:///tunelab.db, an optuna storage object, or None (in memory)")


def _names(storage: object) -> list[str]:
    import optuna

    return sorted(optuna.get_all_study_names(storage))


def delete_studies(storage: StorageLike, name: str, *, stages: bool = True, must_exist: bool = True
                   ) -> list[tuple[str, int]]:
    """Delete study ``name`` (and its stage studies ``name.stageK`` when ``stages``) from
    ``storage``; returns ``(study, trial count)`` for each one deleted.

    With ``must_exist`` an unknown name raises ConfigError listing the studies there are
    (a compare is the study ``compare:NAME``).

    Example:
        >>> import optuna
        >>> st = optuna.storages.InMemoryStorage()
        >>> _ = optuna.create_study(study_name="a", storage=st)
        >>> delete_studies(st, "a")
        [('a', 0)]
    """
    import optuna

    if isinstance(storage, str) and missing_sqlite_file(storage):
        if not must_exist:
            return []
        raise ConfigError(f"study {name!r} is not in {storage}; the file {missing_sqlite_file(storage)} "
                          f"does not exist")
    with storage_errors(storage if isinstance(storage, str) else "<storage object>"):
        names = _names(storage)
    doomed = [n for n in names if n == name or (stages and n.startswith(name + ".stage")
                                                 and n[len(name) + 6:].isdigit())]
    if not doomed and must_exist:
        import difflib

        hint = difflib.get_close_matches(name, names, n=1)
        there = (f"choose one of {names}" + (f" (did you mean {hint[0]!r}?)" if hint else "")) if names \
            else "it holds no studies"
        where = storage if isinstance(storage, str) else "this storage"
        raise ConfigError(f"study {name!r} is not in {where}; {there}")
    out = []
    for n in doomed:
        trials = len(optuna.load_study(study_name=n, storage=storage).get_trials(deepcopy=False))
        optuna.delete_study(study_name=n, storage=storage)
        out.append((n, trials))
    return out
