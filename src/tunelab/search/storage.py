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

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

from tunelab.errors import ConfigError

__all__ = ["write_trial", "queue_by_state", "storage_errors", "missing_sqlite_file", "sqlite_file", "reset_session", "resolve_storage", "delete_studies", "IN_MEMORY",
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


def write_trial(study, trial_id: int, attrs: Optional[dict] = None,
                intermediate: Sequence[tuple[int, float]] = ()) -> None:
    """Write a running trial's user attributes and intermediate values in one transaction.

    Optuna's storage API commits each attribute and each reported value on its own (about 1.3 ms
    apiece in a SQLite file, 30 commits for a 20-epoch trial); the study driver, the only writer,
    gathers what it has for a trial and writes it here at once: new attributes and epoch values
    added as rows of Optuna's tables in one go, ones already there updated with Optuna's own code
    (the rows ``set_user_attr`` / ``report`` write, so optuna-dashboard reads them as ever). A storage that is not an RDB one gets the plain per-item calls.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> t = study.ask()
        >>> write_trial(study, t._trial_id, {"a": 1}, [(1, 0.5), (2, 0.25)])
        >>> got = study._storage.get_trial(t._trial_id)
        >>> got.user_attrs, got.intermediate_values
        ({'a': 1}, {1: 0.5, 2: 0.25})
    """
    attrs = attrs or {}
    if not attrs and not intermediate:
        return
    storage = study._storage
    backend = getattr(storage, "_backend", storage)  # optuna wraps an RDBStorage in a cache
    batched = _rdb_batch(backend)
    if batched is None:
        for step, value in intermediate:
            storage.set_trial_intermediate_value(trial_id, step, value)
        for key, value in attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        return
    session_of, models = batched
    values = dict(intermediate)  # a step reported twice keeps its last value, as report() does
    with session_of(backend.scoped_session, True) as session:
        backend.check_trial_is_updatable(trial_id, models.TrialModel.find_or_raise_by_id(trial_id, session).state)
        row = models.TrialIntermediateValueModel
        there = {s for (s,) in session.query(row.step).filter(row.trial_id == trial_id)} if values else set()
        for step, value in values.items():
            if step in there:  # written before: Optuna's update of the row
                backend._set_trial_intermediate_value_without_commit(session, trial_id, step, value)
                continue
            stored, kind = row.intermediate_value_to_stored_repr(value)
            session.add(row(trial_id=trial_id, step=step, intermediate_value=stored, intermediate_value_type=kind))
        attr = models.TrialUserAttributeModel
        keys = {k for (k,) in session.query(attr.key).filter(attr.trial_id == trial_id)} if attrs else set()
        for key, value in attrs.items():
            if key in keys:  # set before: Optuna's upsert
                backend._set_trial_attr_without_commit(session, attr, trial_id, key, value)
            else:
                session.add(attr(trial_id=trial_id, key=key, value_json=json.dumps(value)))


def _rdb_batch(backend) -> Optional[tuple]:
    """Optuna's session helper and its table models when ``backend`` is an RDBStorage whose
    per-row writers this Optuna still has (else None: use the public calls)."""
    try:
        from optuna.storages import RDBStorage
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
    except ImportError:  # pragma: no cover - an Optuna without these internals
        return None
    if not isinstance(backend, RDBStorage) or not all(
            hasattr(backend, m) for m in ("_set_trial_intermediate_value_without_commit",
                                          "_set_trial_attr_without_commit", "scoped_session",
                                          "check_trial_is_updatable")):
        return None
    return _create_scoped_session, models


def queue_by_state(study) -> None:
    """Make ``study.ask`` look for queued (WAITING) trials with a query on the state.

    Each ``ask`` first pops a queued trial; through Optuna's cache in front of an RDB storage that
    reads every unfinished trial, with all its attributes, from the database — O(trials running)
    per ask: 55 ms an ask with 256 trials of a population running, 14 s of 20 for 256 tiny trials.
    The RDB storage itself filters by state in SQL. The claim is Optuna's (a trial another driver
    took first is skipped), so drivers sharing a study still take each queued trial once.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> queue_by_state(study)  # in memory: nothing to change
        >>> study.enqueue_trial({"x": 1.0})
        >>> study.ask({"x": optuna.distributions.FloatDistribution(0, 2)}).params
        {'x': 1.0}
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import RDBStorage
    from optuna.trial import TrialState

    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, RDBStorage) or backend is storage or not hasattr(study, "_pop_waiting_trial_id"):
        return

    def pop_waiting_trial_id() -> Optional[int]:
        for trial in backend.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,)):
            try:
                if storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
                    _cache_claimed(storage, study._study_id, backend.get_trial(trial._trial_id))
                    return trial._trial_id
            except UpdateFinishedTrialError:  # another driver took and finished it
                continue
        return None

    study._pop_waiting_trial_id = pop_waiting_trial_id


def _cache_claimed(storage, study_id: int, trial) -> None:
    """Tell Optuna's cache about a queued trial just claimed from the database, as its own queue
    read would have: the cache reads only trials newer than the last finished one it has seen, so a
    trial another process queued (a rerun re-queueing a killed driver's trial) can be unknown to it,
    and ``ask`` would fail with KeyError when it sets the trial's first parameter."""
    from optuna.storages._cached_storage import _StudyInfo

    with storage._lock:
        info = storage._studies.setdefault(study_id, _StudyInfo())
        storage._add_trials_to_cache(study_id, [trial])
        info.unfinished_trial_ids.add(trial._trial_id)  # re-read from the database until it ends


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
    path = sqlite_file(url)
    return None if path is None or Path(path).exists() else path


def sqlite_file(url: str) -> Optional[str]:
    """The database file of a ``sqlite:///`` URL; None for another kind of URL or an in-memory one.

    Example:
        >>> sqlite_file("sqlite:///runs/t.db"), sqlite_file("sqlite:///:memory:")
        ('runs/t.db', None)
    """
    from sqlalchemy.engine import make_url
    import sqlalchemy.exc

    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return None  # not a URL at all: opening it reports that
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


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
