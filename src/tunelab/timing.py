"""Where the seconds go: named parts of a run, accumulated with a wall clock.

The trainer (train, eval, the epoch callback, the run folder), a trial (data, model) and the study
driver (sampler, storage, pruner) each keep one; a study's profile (``tunelab tune --profile``,
``tunelab.search.profile``) adds them up.

A process's start-up (``startup_lap``, ``startup``): where the seconds from the process's start to
its first training step went (the interpreter, imports and config, threads, data, model, run
folder, optimizer, first step), recorded once per process and written to a run's result.json.
``CPU_MARK`` is the machine's CPU counters when tunelab was imported: the thread policy's reading
window (``tunelab.trainer.threads``) starts there.

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

import os
import time
from contextlib import contextmanager
from typing import Iterator, Mapping, Optional

__all__ = ["Stopwatch", "merged", "busy_cpu_seconds", "process_age", "startup_lap", "startup", "CPU_MARK"]

_NOT_A_STARTUP_S = 30.0  # a first run this long after the import is a session's, not a start-up


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


def busy_cpu_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (Linux ``/proc/stat``; steal included: the
    host took them); OSError elsewhere."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]  # user .. steal; guest is inside user
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def process_age() -> Optional[float]:
    """Seconds since this process started (Linux: its start time in /proc/self/stat against
    /proc/uptime, to the clock tick); None where the system does not say."""
    try:
        with open("/proc/self/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")  # field 22
        with open("/proc/uptime") as f:
            return max(0.0, float(f.read().split()[0]) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _cpu_mark() -> list[float]:
    try:
        return [time.monotonic(), busy_cpu_seconds(), time.process_time()]
    except (OSError, ValueError, IndexError, AttributeError):
        return []


CPU_MARK: list[float] = _cpu_mark()  # [monotonic, busy CPU-s of all cores, this process's CPU-s] or []
_STARTUP: dict[str, float] = {"interpreter": process_age() or 0.0}  # python's start to tunelab's import
_LAP = [time.perf_counter(), 0.0]  # [clock of the last lap, 1.0 once the first step closed it]


def startup_lap(name: str, *, last: bool = False) -> bool:
    """Add the seconds since the previous lap to the start-up part ``name``; ``last`` closes the
    start-up (the first training step is done). No-op once closed; True when it recorded."""
    if _LAP[1]:
        return False
    now = time.perf_counter()
    _STARTUP[name] = _STARTUP.get(name, 0.0) + now - _LAP[0]
    _LAP[0] = now
    if last:
        _LAP[1] = 1.0
    return True


def startup() -> Optional[dict[str, float]]:
    """This process's start-up, part -> seconds with their ``total`` (the process's start to the end
    of its first training step), once the first step is done; None before, or when the first run came
    long after the import (a notebook: that was the user's time, not a start-up).

    Example:
        >>> s = startup()
        >>> s is None or abs(s["total"] - sum(v for k, v in s.items() if k != "total")) < 1e-6
        True
    """
    parts = dict(_STARTUP)
    if not _LAP[1] or parts.get("imports and config", 0.0) > _NOT_A_STARTUP_S:
        return None
    rounded = {k: round(v, 4) for k, v in parts.items()}
    return {**rounded, "total": round(sum(rounded.values()), 4)}
