"""The executor protocol: run trial specs, stream events, obey the driver's decisions.

An executor pulls specs from a (lazy) iterator whenever it has a free slot — so the study
driver asks the sampler only when a trial can start — runs them, and calls ``on_event`` for
every event. For ``epoch`` events the answer may be ``"prune"``: the trial stops at once and
ends with a ``pruned`` event. Executors never write to storage; the driver does.

Example:
    >>> spec = TrialSpec(number=0, config={"training": {"epochs": 1}}, objective="val_accuracy")
    >>> spec.number, spec.fn is None
    (0, True)
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Optional, Protocol

__all__ = ["TrialSpec", "Event", "Decision", "Executor", "EventKind", "interrupted_write", "note_interrupt",
           "interrupt_pending", "clear_interrupt", "check_trial_timeout"]

EventKind = Literal["start", "epoch", "done", "pruned", "failed"]
Decision = Optional[Literal["continue", "prune"]]


@dataclass(frozen=True)
class TrialSpec:
    """One trial to run: a resolved config (as a plain dict) and what to report.

    ``fn`` is a user objective ``fn(config: dict, reporter) -> float`` (module-level, so it
    can be pickled to a worker process); None means "train config with tunelab".
    ``log_dir`` is where a trained config with ``training.log: [tensorboard]`` writes its
    event files; None: none are written.
    """

    number: int
    config: dict
    objective: str = "val_accuracy"
    fn: Optional[Callable[..., float]] = None
    seed: int = 0
    test: bool = False  # read the test set at the end (compare runs); search trials never do
    log_dir: Optional[str] = None  # the trial's TensorBoard folder (set by the driver when the config asks)
    run_dir: Optional[str] = None  # a live run folder (status, events, checkpoints; tunelab control reaches it)


@dataclass(frozen=True)
class Event:
    """What an executor reports about trial ``number``.

    start: the trial began (``metrics`` may hold ``pid``); epoch: ``step`` (1-based) ended
    with objective ``value`` and ``metrics``; done: final ``value`` and ``metrics`` (summary,
    ``history``); pruned: stopped on the driver's decision at ``step``; failed: ``error``
    says why (diverged, raised, worker process died).
    """

    number: int
    kind: EventKind
    step: int = 0
    value: Optional[float] = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""


class Executor(Protocol):
    """Runs trials and streams their events; interchangeable (inline, processes, ...)."""

    def run(self, trials: Iterator[TrialSpec], on_event: Callable[[Event], Decision]) -> None: ...


def interrupted_write(error: BaseException) -> bool:
    """Whether ``error`` is a storage write cut by Ctrl-C or SIGTERM: SQLite answers a signal
    that lands inside a statement with OperationalError('interrupted'), which Optuna wraps in a
    StorageInternalError; the driver must treat it as the interrupt it is.

    Example:
        >>> import sqlite3
        >>> try:
        ...     raise RuntimeError("commit failed") from sqlite3.OperationalError("interrupted")
        ... except RuntimeError as e:
        ...     interrupted_write(e)
        True
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, KeyboardInterrupt) or (
                type(error).__name__ == "OperationalError" and "interrupted" in str(error).lower()):
            return True
        error = error.__cause__ or error.__context__
    return False


# A Ctrl-C or SIGTERM that lands inside a garbage-collection callback (a finalizer or a weakref
# callback, as SQLAlchemy runs) is printed as "Exception ignored" and lost. The CLI's signal handlers
# also note it here, and the study driver checks the note at its next event, so it is never lost.
_PENDING = {"interrupt": False}


def note_interrupt() -> None:
    """Record that an interrupt signal arrived (the CLI's handlers call this before raising)."""
    _PENDING["interrupt"] = True


def interrupt_pending() -> bool:
    """Whether a noted interrupt has not been acted on (see note_interrupt).

    Example:
        >>> clear_interrupt(); interrupt_pending()
        False
        >>> note_interrupt(); interrupt_pending()
        True
        >>> clear_interrupt()
    """
    return _PENDING["interrupt"]


def clear_interrupt() -> None:
    _PENDING["interrupt"] = False


def check_trial_timeout(value: object) -> None:
    """``--trial-timeout`` must be None or a finite number of seconds > 0 (one-line ConfigError)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
                              or not math.isfinite(value)):
        from tunelab.errors import ConfigError

        raise ConfigError(f"--trial-timeout={value!r} is out of range; allowed: a finite number of seconds > 0 "
                          f"(leave it out for no limit)")
