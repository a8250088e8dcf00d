"""Several study drivers on one study: who is alive, one ask at a time, and the counts in storage.

Two or more ``tunelab tune`` (or ``tunelab compare``) processes may drive the same study, on one
machine (SQLite) or on several (PostgreSQL). They cooperate through the storage alone:

- **Identity and heartbeat.** Each driver has an id; every trial it asks carries it (the trial's
  ``driver`` attribute), and the driver records ``{host, pid, time}`` under the study system attribute
  ``tunelab.driver.<id>`` when it starts and every HEARTBEAT_S seconds from a background thread (so a
  trial training for an hour in the driver's own process does not make it look dead).
- **Liveness.** A driver is alive when its heartbeat is younger than GRACE_S and, on this host, its
  process still exists (a driver killed a moment ago on this machine is known dead at once; one on
  another machine after GRACE_S). A RUNNING trial is stale only when its driver is dead; a driver
  recovers (fails and requeues) only stale trials, never another live driver's, and on Ctrl-C sweeps
  only its own.
- **One ask at a time.** Counting what the study holds and asking the next trial happen under a lock
  shared by every driver of the study (``ask_lock``: a ``flock`` on an SQLite database file, a
  PostgreSQL advisory lock, a process-local lock otherwise), so the study stops at exactly its total
  and a compare's (arm, seed) pair is claimed by one driver.

Example:
    >>> import optuna
    >>> study = optuna.create_study()
    >>> counts(study)
    {'finished': 0, 'running': 0}
    >>> with ask_lock(study):
    ...     _ = study.ask()
    >>> counts(study)
    {'finished': 0, 'running': 1}
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Iterator, Optional

import optuna
from optuna.trial import TrialState

from tunelab.search.storage import sqlite_file

__all__ = ["HEARTBEAT_S", "GRACE_S", "new_driver_id", "Heartbeat", "driver_alive", "ask_lock", "counts",
           "create_study"]

HEARTBEAT_S = 10.0  # seconds between a driver's heartbeats
GRACE_S = 60.0  # a heartbeat older than this: the driver is gone
_KEY = "tunelab.driver."
_LOCAL_LOCKS: dict[str, threading.Lock] = {}


def new_driver_id() -> str:
    return uuid.uuid4().hex[:12]


def _rdb(study: optuna.Study):
    """The study's RDBStorage (behind Optuna's cache), or None for another storage."""
    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


class Heartbeat:
    """Records the driver's heartbeat now and every HEARTBEAT_S seconds until ``stop()``; only for
    storages other processes can share (an in-memory study has one driver)."""

    def __init__(self, study: optuna.Study, driver_id: str, every: float = HEARTBEAT_S) -> None:
        self.study, self.driver_id, self.every = study, driver_id, every
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        if _rdb(study) is not None:
            self.beat()
            self._thread = threading.Thread(target=self._loop, name="tunelab-heartbeat", daemon=True)
            self._thread.start()

    def beat(self, ended: bool = False) -> None:
        self.study._storage.set_study_system_attr(
            self.study._study_id, _KEY + self.driver_id,
            {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), "ended": ended})

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a missed beat is retried; the driver's own writes report errors
                pass

    def stop(self) -> None:
        """Stop beating and record that the driver ended (its trials are then stale at once)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._thread = None
        try:
            self.beat(ended=True)
        except Exception:  # noqa: BLE001 - storage gone (interrupted): liveness then falls to the pid / grace
            pass


def driver_alive(study: optuna.Study, driver_id: Optional[str], now: Optional[float] = None,
                 beats: Optional[dict] = None) -> bool:
    """Whether the driver ``driver_id`` still drives the study (see the module docstring); a trial
    without a driver (an older tunelab) or of an ended driver has none alive.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> driver_alive(study, None), driver_alive(study, "nobody")
        (False, False)
    """
    if not driver_id:
        return False
    if beats is None:
        beats = study._storage.get_study_system_attrs(study._study_id)
    beat = beats.get(_KEY + driver_id)
    if not isinstance(beat, dict) or beat.get("ended"):
        return False
    now = time.time() if now is None else now
    if now - float(beat.get("time", 0)) > GRACE_S:
        return False
    if beat.get("host") == socket.gethostname():
        from tunelab.trainer.live import pid_alive

        return pid_alive(beat.get("pid"))
    return True


def create_study(**kwargs) -> optuna.Study:
    """``optuna.create_study(..., load_if_exists=True)`` made safe for drivers that open a new database
    at the same moment: Optuna creates the tables and stamps the schema version without a lock, so
    the second of two drivers started together fails ("UNIQUE constraint failed: alembic_version",
    "table ... already exists"). An SQLite file is opened under its file lock; any storage is
    retried a few times on those errors."""
    import sqlalchemy.exc

    storage = kwargs.get("storage")
    path = sqlite_file(storage) if isinstance(storage, str) else None
    for attempt in range(5):
        try:
            if path is None:
                return optuna.create_study(load_if_exists=True, **kwargs)
            with _file_lock(path):
                return optuna.create_study(load_if_exists=True, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError) as e:
            racing = any(word in str(e) for word in ("alembic_version", "already exists", "UNIQUE constraint"))
            if not racing or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """``flock`` on the database file itself: SQLite locks with POSIX record locks, which on Linux
    do not interact with ``flock`` (on NFS they do: keep a shared study on PostgreSQL there). A file
    that does not exist yet is created empty, which SQLite takes as a new database."""
    import fcntl

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def ask_lock(study: optuna.Study) -> Iterator[None]:
    """Hold the study's ask lock, shared by every driver of it (see the module docstring)."""
    backend = _rdb(study)
    dialect = backend.engine.dialect.name if backend is not None else ""
    if dialect == "sqlite" and backend.engine.url.database not in (None, "", ":memory:"):
        with _file_lock(backend.engine.url.database):
            yield
        return
    if dialect == "postgresql":
        import sqlalchemy

        key = int.from_bytes(hashlib.sha1(f"tunelab:{study.study_name}".encode()).digest()[:8], "big", signed=True)
        with backend.engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    lock = _LOCAL_LOCKS.setdefault(f"{id(study._storage)}:{study.study_name}", threading.Lock())
    with lock:
        yield


def counts(study: optuna.Study) -> dict[str, int]:
    """``finished``: trials that count toward the study's total (complete, pruned, failed, except
    failures requeued to run again); ``running``: trials running now (any driver). Read with two
    queries on an RDB storage (Optuna's trial list would load every trial)."""
    backend = _rdb(study)
    if backend is None:
        trials = study.get_trials(deepcopy=False)
        finished = sum(1 for t in trials if t.state.is_finished() and not (
            t.state == TrialState.FAIL and t.user_attrs.get("requeued")))
        return {"finished": finished, "running": sum(1 for t in trials if t.state == TrialState.RUNNING)}
    import sqlalchemy
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    trial, attr = models.TrialModel, models.TrialUserAttributeModel
    with _create_scoped_session(backend.scoped_session) as session:
        by_state = dict(session.query(trial.state, sqlalchemy.func.count(trial.trial_id))
                        .filter(trial.study_id == study._study_id).group_by(trial.state).all())
        requeued = (session.query(sqlalchemy.func.count(trial.trial_id))
                    .join(attr, attr.trial_id == trial.trial_id)
                    .filter(trial.study_id == study._study_id, trial.state == TrialState.FAIL,
                            attr.key == "requeued", attr.value_json == "true").scalar())
    finished = sum(by_state.get(s, 0) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    return {"finished": finished - int(requeued or 0), "running": by_state.get(TrialState.RUNNING, 0)}
