"""Executors: run trial specs, stream their events, obey the driver's prune decisions.

``inline`` runs trials one by one in the driver's process; ``processes`` runs them in
long-lived worker processes, one trial per worker at a time. Both pull specs lazily from an
iterator and are interchangeable behind the ``Executor`` protocol.

Example:
    >>> sorted(EXECUTORS)
    ['inline', 'processes']
    >>> type(make_executor(1)).__name__
    'InlineExecutor'
"""

from __future__ import annotations

from tunelab.errors import ConfigError
from tunelab.execute.base import Decision, Event, Executor, TrialSpec
from tunelab.execute.inline import InlineExecutor
from tunelab.execute.processes import ProcessExecutor
from tunelab.execute.trial import Reporter, TrialPruned, execute_trial
from tunelab.registry import Registry

__all__ = [
    "TrialSpec", "Event", "Decision", "Executor", "execute_trial", "Reporter", "TrialPruned",
    "InlineExecutor", "ProcessExecutor", "EXECUTORS", "make_executor",
]

EXECUTORS = Registry("--executor")


@EXECUTORS.register("inline")
def _inline(workers: int = 1) -> InlineExecutor:
    if workers != 1:
        raise ConfigError(f"--workers={workers!r} needs --executor processes; "
                          "--executor inline runs one trial at a time")
    return InlineExecutor()


@EXECUTORS.register("processes")
def _processes(workers: int = 2) -> ProcessExecutor:
    return ProcessExecutor(workers)


def make_executor(workers: int) -> Executor:
    """The default executor for ``workers`` parallel trials: inline for 1, processes for more.

    Example:
        >>> type(make_executor(2)).__name__
        'ProcessExecutor'
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"--workers={workers!r} is not allowed; use a whole number >= 1")
    return EXECUTORS.get("inline" if workers == 1 else "processes")(workers=workers)
