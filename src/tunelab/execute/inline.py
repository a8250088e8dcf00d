"""The inline executor: trials one after another in the driver's own process.

The simplest executor and the reference the others are tested against: no processes, no
pickling, the user's objective may be a lambda. The next spec is pulled from the iterator
only when the previous trial has ended, so the sampler always sees every earlier result.

Example:
    >>> from tunelab.execute.base import TrialSpec
    >>> def objective(config, reporter):
    ...     reporter.report(0.5, step=1)
    ...     return 0.5
    >>> events = []
    >>> InlineExecutor().run(iter([TrialSpec(0, {}, fn=objective)]),
    ...                      lambda ev: events.append(ev.kind))
    >>> events
    ['start', 'epoch', 'done']
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Optional

from tunelab.execute.base import Decision, Event, TrialSpec
from tunelab.execute.trial import execute_trial

__all__ = ["InlineExecutor"]


class InlineExecutor:
    """Runs each trial in the current process; ``on_event`` answers ``"prune"`` to stop one.

    KeyboardInterrupt propagates to the caller; ``running()`` then names the trial that was
    cut short. Usable as a context manager like the other executors (nothing to clean up).
    """

    def __init__(self) -> None:
        self._current: Optional[int] = None

    def run(self, trials: Iterable[TrialSpec], on_event: Callable[[Event], Decision]) -> None:
        """Run every spec of ``trials`` in turn, streaming start, epoch and final events."""
        for spec in trials:
            self._current = spec.number
            on_event(Event(spec.number, "start", metrics={"pid": os.getpid()}))

            def report(step: int, value: float, metrics: dict, number: int = spec.number) -> bool:
                return on_event(Event(number, "epoch", step, value, metrics)) == "prune"

            final = execute_trial(spec, report)
            if final.metrics.get("status") == "interrupted":
                # fit() turns Ctrl-C into a short 'interrupted' run; a study must stop instead
                raise KeyboardInterrupt(f"trial {spec.number} interrupted")
            on_event(final)
            self._current = None

    def running(self) -> list[int]:
        """Numbers of the trials in flight (the one cut short by an interrupt, if any)."""
        return [] if self._current is None else [self._current]

    def close(self) -> None:
        """Nothing to release; present so every executor is closed the same way."""

    def __enter__(self) -> "InlineExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
