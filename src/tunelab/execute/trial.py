"""Running one trial in the current process: the body every executor shares.

``execute_trial(spec, report)`` trains ``spec.config`` with tunelab (or calls the user's
objective), calls ``report(step, value, metrics) -> bool`` after every epoch (True means
prune) and returns the final Event (done, pruned or failed). Datasets are loaded once per
process and reused by later trials with the same data config.

Example:
    >>> spec = TrialSpec(0, {"training": {"epochs": 1}, "model": {"hidden": [16]}})
    >>> execute_trial(spec, lambda step, value, metrics: False).kind
    'done'
"""

from __future__ import annotations

import math
import traceback
from typing import Any, Callable

from tunelab.errors import TunelabError
from tunelab.execute.base import Event, TrialSpec, interrupted_write
from tunelab.timing import Stopwatch, merged

__all__ = ["execute_trial", "final_event", "Reporter", "TrialPruned", "load_cached"]

Report = Callable[[int, float, dict], bool]


class TrialPruned(Exception):
    """Raised by Reporter.report inside a user objective when the driver prunes the trial."""


class Reporter:
    """Handed to a user objective: ``reporter.report(value, step)`` after each epoch."""

    def __init__(self, report: Report) -> None:
        self._report, self.last_step = report, 0

    def report(self, value: float, step: int, **metrics: float) -> None:
        self.last_step = step
        if self._report(step, float(value), {"value": float(value), **metrics}):
            raise TrialPruned(f"pruned at step {step}")


def load_cached(cfg):
    """The DataBundle for a RunConfig's data section on its device, loaded once per process."""
    from tunelab.trainer.prepare import load_run_data

    return load_run_data(cfg, cache=True)


def _train(spec: TrialSpec, report: Report) -> Event:
    from tunelab.config import from_dict
    from tunelab.trainer.fit import fit
    from tunelab.trainer.prepare import prepare
    from tunelab.trainer.tensorboard import open_log

    cfg = from_dict(spec.config)
    watch = Stopwatch()
    with watch.part("data"):  # loaded once per process: later trials find it cached
        load_cached(cfg)
    with watch.part("model"):
        run = prepare(cfg, cache=True)  # threads (training.threads), the cached data, seeds, model
    data, model = run.data, run.model
    pruned = {"step": 0}

    def on_epoch(ev):
        if report(ev.epoch, ev.metrics[spec.objective], ev.metrics):
            pruned["step"] = ev.epoch
            return "stop"
        return None

    tb = open_log(cfg, spec.log_dir)
    if tb is not None:
        on_epoch = tb.hooks(on_epoch)[0]
    folder, control = _live_folder(spec, cfg)
    result = None
    try:  # search trials read validation only (test=spec.test)
        result = fit(cfg, data, model, on_epoch=on_epoch, test=spec.test, folder=folder, control=control)
    finally:
        if tb is not None:
            tb.close(result)
    if folder is not None:
        with watch.part("folder"):
            _finish_folder(folder, cfg, result, spec)
    result.timing = merged(watch.seconds, result.timing)
    return final_event(spec, result, pruned["step"])


def final_event(spec: TrialSpec, result, pruned_step: int = 0) -> Event:
    """The final Event of a trained trial from its RunResult: pruned (``pruned_step``: the epoch
    the driver's decision stopped it at; or stopped by the user), failed (diverged) or done."""
    metrics = {**result.summary(), "history": result.history}
    if getattr(result, "timing", None):  # seconds of the trial's parts, for the study's profile
        metrics["timing"] = {k: round(v, 4) for k, v in result.timing.items()}
    lineage = [e for e in getattr(result, "events", []) if e.get("kind") == "pbt"]
    if lineage:  # population-based training: what the member copied, when, and its new values
        metrics["pbt"] = lineage
    if result.status == "stopped" and not pruned_step:  # stopped by the user (tunelab control)
        return Event(spec.number, "pruned", result.epochs_run, metrics=metrics)
    if result.status == "diverged":
        return Event(spec.number, "failed", result.epochs_run, metrics=metrics, error=f"diverged: {result.message}")
    if pruned_step:
        return Event(spec.number, "pruned", pruned_step, metrics=metrics)
    value = _final_value(spec.objective, result)
    return Event(spec.number, "done", result.epochs_run, value=value, metrics=metrics)


def _live_folder(spec: TrialSpec, cfg):
    """The trial's live run folder and control channel, when the study keeps trial folders."""
    if spec.run_dir is None:
        return None, None
    from tunelab.trainer.control import Control
    from tunelab.trainer.live import LiveFolder

    return LiveFolder(spec.run_dir, cfg), Control(spec.run_dir)


def _finish_folder(folder, cfg, result, spec: TrialSpec) -> None:
    from tunelab.trainer.runfolder import write_run

    write_run(folder.path, cfg, result, {"trial": spec.number})  # no figure: trials draw nothing
    folder.set_status(result.status, epoch=result.epochs_run, step=0,
                      best_val_accuracy=result.summary()["best_val_accuracy"])


def _final_value(objective: str, result) -> float:
    """The objective of a finished run: the summary's value (val_accuracy, val_loss, ...)."""
    if objective in ("val_accuracy", "val_loss"):
        return float(getattr(result, objective))
    return float(result.history[-1][objective])


def execute_trial(spec: TrialSpec, report: Report) -> Event:
    """Run one trial to its end; never raises for trial errors (they become 'failed')."""
    try:
        if spec.fn is None:
            return _train(spec, report)
        reporter = Reporter(report)
        try:
            value = float(spec.fn(spec.config, reporter))
        except TrialPruned:
            return Event(spec.number, "pruned", reporter.last_step)
        if not math.isfinite(value):
            return Event(spec.number, "failed", reporter.last_step, error=f"objective returned {value}")
        return Event(spec.number, "done", reporter.last_step, value=value)
    except TunelabError as e:
        return Event(spec.number, "failed", error=f"{type(e).__name__}: {e}")
    except Exception as e:  # a user's objective or model may raise anything
        if interrupted_write(e):  # Ctrl-C inside the driver's storage write of a report: stop the study
            raise KeyboardInterrupt("interrupted during a storage write") from e
        tb = traceback.format_exc(limit=-3)
        return Event(spec.number, "failed", error=f"{type(e).__name__}: {e}\n{tb}")
