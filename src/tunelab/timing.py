"""Where the seconds go: named parts of a run, accumulated with a wall clock.

The trainer (train, eval, the epoch callback, the run folder), a trial (data, model) and the study
driver (sampler, storage, pruner) each keep one; a study's profile (``tunelab tune --profile``,
``tunelab.search.profile``) adds them up.

Example:
    >>> watch = Stopwatch()
    >>> with watch.part("train"):
    ...     pass
    >>> watch.add("train", 1.5); watch.add("eval", 0.25)
    >>> sorted(watch.seconds), watch.seconds["train"] >= 1.5
    (['eval', 'train'], True)
    >>> merged({"a": 1.0}, {"a": 2.0, "b": 1.0})
    {'a': 3.0, 'b': 1.0}
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator, Mapping

__all__ = ["Stopwatch", "merged"]


class Stopwatch:
    """Seconds per named part (``seconds``: name -> total), added up over many blocks."""

    def __init__(self, seconds: dict[str, float] | None = None) -> None:
        self.seconds: dict[str, float] = seconds if seconds is not None else {}

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Add the wall seconds of the block to ``name`` (also when it raises)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds


def merged(*parts: Mapping[str, float]) -> dict[str, float]:
    """The sum of several name -> seconds maps."""
    out: dict[str, float] = {}
    for p in parts:
        for k, v in p.items():
            out[k] = out.get(k, 0.0) + float(v)
    return out
