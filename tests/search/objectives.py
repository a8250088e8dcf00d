"""Picklable user objectives for the study tests (module level so worker processes import them)."""

import os
import signal
import time


def quadratic(config, reporter):
    """Peak at x = 0.3; reports the same value each epoch (so pruners see it from epoch 1)."""
    value = -((config["x"] - 0.3) ** 2)
    for epoch in range(1, config.get("epochs", 3) + 1):
        time.sleep(config.get("sleep", 0.0))
        reporter.report(value, epoch)
    return value


def dies_when_x_is_large(config, reporter):
    """Kills its own process (a worker dying mid-trial) when x > 0.8."""
    reporter.report(config["x"], 0)
    if config["x"] > 0.8:
        os.kill(os.getpid(), signal.SIGKILL)
    return quadratic(config, reporter)


def hangs_when_x_is_large(config, reporter):
    """Stops its own process (SIGSTOP: a hung worker, no exit, no event) when x > 0.8."""
    reporter.report(config["x"], 0)
    if config["x"] > 0.8:
        os.kill(os.getpid(), signal.SIGSTOP)
    return quadratic(config, reporter)


def raises_when_x_is_small(config, reporter):
    if config["x"] < 0.4:
        raise ValueError(f"x={config['x']} is too small for this objective")
    return quadratic(config, reporter)


def two_dims(config, reporter):
    """Peak at x = 0.3, y = 0.7."""
    value = -((config["x"] - 0.3) ** 2) - (config["y"] - 0.7) ** 2
    reporter.report(value, 1)
    return value
