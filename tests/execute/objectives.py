"""Picklable user objectives for the executor tests: module-level ``fn(config, reporter)``.

Worker processes import this module by name (``tests.execute.objectives``), so every
objective here must stay at module level.
"""

from __future__ import annotations

import math
import os
import signal
import time

import torch


def quadratic(config: dict, reporter) -> float:
    """(x - 2)^2, reported ``epochs`` times as it 'converges'; sleeps ``sleep`` s per step."""
    x = float(config.get("x", 0.0))
    value = (x - 2.0) ** 2
    for step in range(1, int(config.get("epochs", 3)) + 1):
        time.sleep(float(config.get("sleep", 0.01)))
        reporter.report(value + 1.0 / step, step, pid=os.getpid(), threads=torch.get_num_threads())
    return value


def whoami(config: dict, reporter) -> float:
    """Reports its pid and torch thread count at step 1; returns the thread count."""
    reporter.report(0.0, 1, pid=os.getpid(), threads=torch.get_num_threads())
    time.sleep(float(config.get("sleep", 0.2)))
    return float(torch.get_num_threads())


def raises(config: dict, reporter) -> float:
    """Reports once, then raises ValueError."""
    reporter.report(1.0, 1)
    raise ValueError(f"bad x={config.get('x')}")


def suicide(config: dict, reporter) -> float:
    """Kills its own process with SIGKILL after one step when ``config['die']``."""
    reporter.report(1.0, 1)
    if config.get("die"):
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)  # SIGKILL lands before this ends
    return 1.0


def nan(config: dict, reporter) -> float:
    """Returns NaN: a failed trial, not a crash."""
    return math.nan


def exits(config: dict, reporter) -> float:
    """Leaves the process through os._exit mid-trial, like a crashing extension."""
    reporter.report(1.0, 1)
    os._exit(int(config.get("code", 3)))
