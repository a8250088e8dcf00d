"""The study driver: the single writer to storage.

It asks the sampler for a trial only when the executor has a free slot, hands the trial's
resolved config to the executor, reports each epoch's value to the pruner and answers
"prune" or "continue", and tells Optuna the outcome (complete, pruned, failed with the
reason). Every trial keeps its config, per-epoch history, status, duration, seed and the
library versions as user attributes, so a study opens in optuna-dashboard as it is.

Resuming: a trial left RUNNING by a driver that was killed is marked failed (reason:
interrupted) and its parameters are queued again; finished trials are never rerun, and the
study goes on until ``trials`` trials have finished. Such interrupted trials are not failures:
they do not count toward the budget, nor in ``Progress.failed``.

A time budget (``timeout`` seconds) stops asking for new trials once it is spent; the trials
already running finish and are told as usual.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Iterator, Optional

import optuna
from optuna.trial import TrialState

from tunelab.errors import ConfigError
from tunelab.execute.base import Decision, Event, Executor, TrialSpec, interrupt_pending
from tunelab.search.space import SearchSpace
from tunelab.search.drivers import Heartbeat, ask_lock, counts, driver_alive, new_driver_id
from tunelab.search.storage import queue_by_state, write_trial
from tunelab.timing import Stopwatch, merged

__all__ = ["StudyDriver", "Progress", "TrialOutcome", "versions", "finished_count", "recover_stale",
           "tensorboard_root", "TENSORBOARD_ROOT"]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
FLUSH_EVERY = 2.0  # seconds: a running trial's gathered epoch values reach storage at least this often
TENSORBOARD_ROOT = Path("runs") / "tensorboard"  # beside `tunelab train`'s runs/, so one --logdir runs/ shows all


def tensorboard_root(study_name: str) -> Path:
    """Where the trials of a study write their TensorBoard folders (``trial-NNNN``).

    Example:
        >>> tensorboard_root("mnist/lr").as_posix()
        'runs/tensorboard/mnist_lr'
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in study_name)
    return TENSORBOARD_ROOT / safe


def versions() -> dict[str, str]:
    import platform

    import torch

    import tunelab

    return {"tunelab": tunelab.__version__, "torch": torch.__version__,
            "optuna": optuna.__version__, "python": platform.python_version()}


@dataclass(frozen=True)
class TrialOutcome:
    """How one trial ended (plain data, for per-trial log lines).

    ``state`` is complete, pruned or failed; ``epoch`` the epochs it ran (pruned: the epoch
    it was stopped at); ``params`` the sampled values by config key; ``reason`` the first line
    of a failure.
    """

    number: int
    state: str
    value: Optional[float]
    params: dict
    seconds: float
    epoch: Optional[int] = None
    reason: str = ""
    extra: dict = field(default_factory=dict)  # e.g. a compare run's test_accuracy


@dataclass
class Progress:
    """Live counts for the progress display (plain data).

    ``event`` says why ``on_progress`` was called: ``start`` (once, before any trial; the
    counts are what storage held), ``running`` (a trial began) or ``finished`` (``last`` is
    the trial that ended). ``at_start`` is the number of finished trials found in storage when
    this run began. Trials cut short by Ctrl-C are listed in ``interrupted`` and never counted
    as failed (they run again). ``stopped_early`` is ``"timeout"`` when the time budget ended
    the run before ``target`` trials had finished.
    """

    target: int
    done: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    best: Optional[float] = None
    best_number: Optional[int] = None
    started: float = field(default_factory=time.perf_counter)
    last_error: str = ""
    study: str = ""
    at_start: int = 0
    event: str = "start"
    last: Optional[TrialOutcome] = None
    interrupted: list[int] = field(default_factory=list)
    stopped_early: str = ""
    grid: Optional[int] = None  # grid sampler: the number of combinations in the grid
    deleted: int = 0  # trials deleted before this run (fresh=True)
    # seconds this run spent in the driver (``in_driver``: asking, bookkeeping, storage, the progress
    # display), of which ``ask`` (the sampler, through storage) and ``storage`` (writes and reads);
    # ``wall`` when the run ended; see ``split()``
    timing: dict = field(default_factory=dict)
    # what the trials of this run did, summed over trials (seconds; tunelab.search.profile): their
    # parts as the workers timed them (data, model, train, eval, callback, folder, finish), ``trials``
    # (each from hand-over to final event, as the driver saw it), ``epochs`` (epochs trained)
    work: dict = field(default_factory=dict)
    workers: int = 1  # trials the executor ran at once
    executor: dict = field(default_factory=dict)  # the executor's own timing (process_start: seconds)

    @property
    def finished(self) -> int:
        return self.done + self.pruned + self.failed

    @property
    def finished_this_run(self) -> int:
        return self.finished - self.at_start

    def split(self) -> dict[str, float]:
        """Where this run's wall time went, in seconds: ``ask`` (sampler), ``storage``, ``driver``
        (the rest of the driver: bookkeeping, progress display) and ``executor`` (everything else:
        training, evaluation, data, worker processes).

        Example:
            >>> p = Progress(1, timing={"wall": 10.0, "in_driver": 3.0, "ask": 1.0, "storage": 1.5})
            >>> p.split()
            {'ask': 1.0, 'storage': 1.5, 'pruner': 0.0, 'driver': 0.5, 'executor': 7.0}
        """
        t = self.timing
        wall = t.get("wall", time.perf_counter() - self.started)
        ask, storage, pruner = t.get("ask", 0.0), t.get("storage", 0.0), t.get("pruner", 0.0)
        inside = t.get("in_driver", 0.0)
        return {"ask": ask, "storage": storage, "pruner": pruner,
                "driver": max(inside - ask - storage - pruner, 0.0), "executor": max(wall - inside, 0.0)}

    def eta(self, finished_this_run: Optional[int] = None) -> Optional[float]:
        """Seconds left, from this run's mean time per finished trial."""
        n = self.finished_this_run if finished_this_run is None else finished_this_run
        if n <= 0:
            return None
        per = (time.perf_counter() - self.started) / n
        return per * max(self.target - self.finished, 0)


def _requeued(t: optuna.trial.FrozenTrial) -> bool:
    return bool(t.user_attrs.get("requeued"))


def finished_count(study: optuna.Study) -> int:
    """Trials that count toward the budget: finished, except failures that were requeued."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state in FINISHED and not _requeued(t))


def recover_stale(study: optuna.Study, reason: str = "interrupted: the driver stopped while it ran",
                  requeue_params: bool = True, driver_id: Optional[str] = None) -> list[int]:
    """Mark RUNNING trials failed and requeue their params: those whose driver is gone (another
    driver's running trials are left alone; see search/drivers.py), or with ``driver_id`` those of
    that driver (its own Ctrl-C). Under the study's ask lock, so two drivers never requeue one trial
    twice."""
    with ask_lock(study):
        beats, now = study._storage.get_study_system_attrs(study._study_id), time.time()
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if driver_id is not None:  # (a trial without a driver was cut between its ask and its first
            # write: no live driver leaves one, as both happen under the lock held here)
            stale = [t for t in running if t.user_attrs.get("driver") in (driver_id, None)]
        else:
            stale = [t for t in running if not driver_alive(study, t.user_attrs.get("driver"), now, beats)]
        # the copy is queued before the trial is marked failed, and never twice: a kill between the
        # two steps leaves a trial that is still stale, whose next recovery only marks it
        retried = {u.user_attrs["retry_of"] for u in study.get_trials(deepcopy=False) if "retry_of" in u.user_attrs}
        for t in stale:
            if requeue_params and t.number not in retried:
                study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
            write_trial(study, t._trial_id, {"fail_reason": reason, "requeued": True})
            study.tell(t.number, state=TrialState.FAIL)
    return [t.number for t in stale]


class StudyDriver:
    """Runs one Optuna study (or one stage of a staged study) through an executor.

    ``timeout`` (seconds, from ``run()``) stops asking for new trials once spent; running
    trials finish. ``on_progress(progress)`` is called at the start, when a trial begins and
    when one ends (see ``Progress.event``).
    """

    requeue_params = True  # an interrupted trial's parameters are asked again on the next run

    def __init__(self, study: optuna.Study, space: Optional[SearchSpace], keys: list[str], base: dict,
                 target: int, objective_fn: Optional[Callable[..., float]] = None,
                 on_progress: Optional[Callable[[Progress], None]] = None,
                 log_root: Optional[Path] = None, run_root: Optional[Path] = None,
                 timeout: Optional[float] = None) -> None:
        self.study, self.space, self.keys, self.base = study, space, keys, base
        self.run_root = run_root  # trial run folders (None: trials keep no folder)
        self.log_root = log_root if log_root is not None else tensorboard_root(study.study_name)
        self.target, self.fn, self.on_progress = target, objective_fn, on_progress
        self.timeout, self.deadline = timeout, None
        self.dists = space.optuna_params(keys) if space is not None else {}
        self.live: dict[int, optuna.trial.Trial] = {}
        self.t0: dict[int, float] = {}
        self.values: dict[int, dict] = {}  # trial number -> sampled values (for its log line)
        self.last_epoch: dict[int, int] = {}  # trial number -> training.epochs of its config (trained trials)
        self.history: dict[int, list] = {}
        # writes gathered per trial and made in one transaction (search/storage.write_trial): the
        # attributes of a trial between its start and its end, and, when no pruner reads them, its
        # per-epoch values, written at the trial's end or once FLUSH_EVERY seconds have passed since
        # the trial's last write (a study of many tiny trials would otherwise be mostly storage
        # commits; a long trial's epochs still show in optuna-dashboard as it trains)
        self.defer_reports = isinstance(study.pruner, optuna.pruners.NopPruner)
        self.pending: dict[int, dict] = {}  # trial number -> user attributes not yet written
        self.reports: dict[int, list] = {}  # trial number -> (step, value) not yet written
        self.written: dict[int, float] = {}  # trial number -> when its epoch values were last written
        self.progress = Progress(target, study=study.study_name)
        self.driver_id = new_driver_id()  # on every trial it asks; its heartbeat says it is alive
        self.maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        queue_by_state(study)
        self._count_existing()

    @property
    def finished_this_run(self) -> int:
        return self.progress.finished_this_run

    # ------------------------------------------------------------------ bookkeeping
    def _count_existing(self) -> None:
        p = self.progress
        for t in self.study.get_trials(deepcopy=False):
            if t.state == TrialState.COMPLETE:
                p.done += 1
            elif t.state == TrialState.PRUNED:
                p.pruned += 1
            elif t.state == TrialState.FAIL and not _requeued(t):
                p.failed += 1
        p.at_start = p.finished
        self._update_best()

    def _note_best(self, number: int, value: Optional[float]) -> None:
        """A completed trial's value against the best so far (kept here: reading the best trial back
        from storage after every trial costs a query and a trial load)."""
        p = self.progress
        if value is None or value != value:
            return
        if p.best is None or (value > p.best if self.maximize else value < p.best):
            p.best, p.best_number = value, number

    def _update_best(self) -> None:
        try:
            best = self.study.best_trial
            self.progress.best, self.progress.best_number = best.value, best.number
        except ValueError:  # no completed trial yet
            pass

    def _remaining(self) -> int:
        return self.target - self.progress.finished - len(self.live)

    def _notify(self, event: str, outcome: Optional[TrialOutcome] = None) -> None:
        p = self.progress
        p.event, p.running = event, len(self.live)
        if outcome is not None:
            p.last = outcome
        if self.on_progress:
            self.on_progress(p)

    def _out_of_time(self) -> bool:
        if self.deadline is None or time.perf_counter() < self.deadline:
            return False
        self.progress.stopped_early = "timeout"
        return True

    def _outcome(self, number: int, state: str, value: Optional[float], epoch: Optional[int],
                 reason: str = "", extra: Optional[dict] = None) -> TrialOutcome:
        seconds = time.perf_counter() - self.t0.get(number, time.perf_counter())
        return TrialOutcome(number, state, value, self.values.pop(number, {}), round(seconds, 3), epoch,
                            reason.splitlines()[0] if reason else "", extra or {})

    def timed(self, key: str) -> ContextManager[None]:
        """Add the seconds of the block to ``progress.timing[key]``."""
        return Stopwatch(self.progress.timing).part(key)

    # ------------------------------------------------------------------ asking
    def specs(self) -> Iterator[TrialSpec]:
        """Lazily asked trials: the executor pulls one when it has a free slot."""
        while self._remaining() > 0 and not self._out_of_time():
            spec = self._ask_one()
            if spec is False:  # the study holds its total (other drivers asked the rest)
                return
            if spec is not None:
                yield spec

    def _ask_one(self):
        """Ask the sampler for one trial and write its attributes: its TrialSpec; None when its
        config is refused (told as a failed trial); False when the study's finished and running
        trials (of every driver) already make its total. Counting, asking and the first write are
        one step under the study's ask lock (drivers/ask_lock), so drivers sharing the study never
        ask past its total."""
        with self.timed("in_driver"):
            if interrupt_pending():  # a signal whose KeyboardInterrupt a finalizer swallowed
                raise KeyboardInterrupt("interrupted (Ctrl-C or SIGTERM)")
            with ask_lock(self.study):
                with self.timed("ask"):
                    held = counts(self.study)
                    if held["finished"] + held["running"] >= self.target:
                        return False
                    trial = self.study.ask(self.dists)
                values = self.space.decode({k: v for k, v in trial.params.items()})
                # the space file's order, as the user wrote it (Optuna's params come sorted)
                self.values[trial.number] = {**{k: values[k] for k in self.keys if k in values}, **values}
                try:
                    config = self.space.apply(self.base, values)
                except ConfigError as e:  # a combination the config rejects: a failed trial, not a crash
                    write_trial(self.study, trial._trial_id, {"driver": self.driver_id,
                                                              "fail_reason": f"invalid config: {e}"})
                    self.study.tell(trial, state=TrialState.FAIL)
                    self.progress.failed += 1
                    self._notify("finished", self._outcome(trial.number, "failed", None, 0, f"invalid config: {e}"))
                    return None
                seed = int(config.get("training", {}).get("seed", 0)) if isinstance(config, dict) else 0
                attrs = {"config": config, "params": values, "seed": seed, "versions": versions(),
                         "driver": self.driver_id}
                log_dir, run_dir = self.log_dir(trial, config, attrs), self.run_dir(trial, attrs)
                with self.timed("storage"):
                    write_trial(self.study, trial._trial_id, attrs)
            if self.fn is None:
                self.last_epoch[trial.number] = _epochs_of(config, self.space.validate_config)
            self.live[trial.number], self.t0[trial.number] = trial, time.perf_counter()
            self._notify("running")
            return TrialSpec(trial.number, config, self.space.objective_metric, self.fn, seed, log_dir=log_dir,
                             run_dir=run_dir)

    def run_dir(self, trial: optuna.trial.Trial, attrs: dict) -> Optional[str]:
        """The trial's run folder when the study keeps them (the trial's ``run_dir`` attribute, put
        in ``attrs``; absolute, so worker processes agree on it)."""
        from tunelab.trainer.runfolder import fresh_dir

        if self.run_root is None or self.fn is not None:
            return None
        path = str(fresh_dir(self.run_root, f"trial-{trial.number:04d}").resolve())
        attrs["run_dir"] = path
        return path

    def log_dir(self, trial: optuna.trial.Trial, config: dict, attrs: dict) -> Optional[str]:
        """The trial's TensorBoard folder when its config asks for one (kept as the trial's
        ``tensorboard`` attribute, put in ``attrs``); a folder left by an earlier study of the same name
        is not reused. The path is absolute so worker processes agree on it."""
        from tunelab.trainer.runfolder import fresh_dir
        from tunelab.trainer.tensorboard import wants_tensorboard

        if self.fn is not None or not wants_tensorboard(config):
            return None
        path = str(fresh_dir(self.log_root, f"trial-{trial.number:04d}").resolve())
        attrs["tensorboard"] = path
        return path

    # ------------------------------------------------------------------ events
    def on_event(self, ev: Event) -> Decision:
        """The executor's event: bookkeeping, storage, and the answer to an epoch (prune or not)."""
        with self.timed("in_driver"):
            return self.handle(ev)

    def handle(self, ev: Event) -> Decision:
        if interrupt_pending():  # a signal whose KeyboardInterrupt a finalizer swallowed
            raise KeyboardInterrupt("interrupted (Ctrl-C or SIGTERM)")
        trial = self.live.get(ev.number)
        if trial is None:
            return None
        if ev.kind == "start":
            where = self.pending.setdefault(ev.number, {})  # written with the result
            where["pid"] = ev.metrics.get("pid")
            # a Ray worker's host and node (and its retries after a worker died); the size of the
            # population the trial was trained in
            where.update({k: ev.metrics[k] for k in ("host", "node", "retries", "died_on", "population")
                          if k in ev.metrics})
            return None
        if ev.kind == "epoch":
            self.history.setdefault(ev.number, []).append(ev.metrics)
            self.report(trial, ev)
            if self.last_epoch.get(ev.number, 0) and ev.step >= self.last_epoch[ev.number]:
                # the trial has trained all its epochs: pruning now saves nothing and would only
                # throw its result away (an ASHA rung can fall on the last epoch)
                return "continue"
            with self.timed("pruner"):  # it reads the other trials from storage
                prune = trial.should_prune()
            return "prune" if prune else "continue"
        self._finish(trial, ev)
        return None

    def report(self, trial: optuna.trial.Trial, ev: Event) -> None:
        """Record an epoch's value: in storage now when a pruner reads it, else with the result or
        when FLUSH_EVERY seconds have passed since the trial's last write."""
        if self.defer_reports:
            self.reports.setdefault(ev.number, []).append((ev.step, ev.value))
            now = time.perf_counter()
            if now - self.written.setdefault(ev.number, self.t0.get(ev.number, now)) >= FLUSH_EVERY:
                self.written[ev.number] = now
                with self.timed("storage"):
                    write_trial(self.study, trial._trial_id, intermediate=self.reports.pop(ev.number))
            return
        with self.timed("storage"):
            trial.report(ev.value, ev.step)

    def flush(self, trial: optuna.trial.Trial, number: int, attrs: dict) -> None:
        """Write the trial's gathered attributes and epoch values, and ``attrs``, in one transaction."""
        self.written.pop(number, None)
        with self.timed("storage"):
            write_trial(self.study, trial._trial_id, {**self.pending.pop(number, {}), **attrs},
                        self.reports.pop(number, []))

    def _finish(self, trial: optuna.trial.Trial, ev: Event) -> None:
        if ev.metrics.get("status") == "interrupted":
            # the training itself was interrupted (a signal in a worker): not a result; rerun it
            self._abandon_one(ev.number, trial, "interrupted while training")
            self.live.pop(ev.number, None)
            self._notify("running")
            return
        history = ev.metrics.get("history", self.history.get(ev.number, []))
        seconds = time.perf_counter() - self.t0[ev.number]
        attrs = {"history": json.loads(json.dumps(history, default=float)), "duration_s": round(seconds, 3)}
        self.progress.work = merged(self.progress.work, ev.metrics.get("timing") or {},
                                    {"trials": seconds, "epochs": len(history)})
        summary = {k: v for k, v in ev.metrics.items() if k != "history"}
        if summary:
            attrs["result"] = json.loads(json.dumps(summary, default=str))
        if ev.kind == "pruned":
            attrs["pruned_at_epoch"] = ev.step
        elif ev.kind != "done":
            attrs["fail_reason"] = ev.error[:2000] or "unknown"
        self.flush(trial, ev.number, attrs)
        p = self.progress
        extra = {k: summary[k] for k in ("test_accuracy",) if isinstance(summary.get(k), (int, float))}
        with self.timed("storage"):
            self._tell(trial, ev)
        if ev.kind == "done":
            p.done += 1
            outcome = self._outcome(ev.number, "complete", ev.value, summary.get("epochs_run", ev.step), extra=extra)
        elif ev.kind == "pruned":
            p.pruned += 1
            last = (self.history.get(ev.number) or [{}])[-1]  # a user objective reports "value"
            value = last.get(self.space.objective_metric, last.get("value")) if self.space is not None else None
            outcome = self._outcome(ev.number, "pruned", value, ev.step)
        else:
            p.failed += 1
            p.last_error = ev.error.splitlines()[0] if ev.error else ""
            outcome = self._outcome(ev.number, "failed", None, ev.step or None, ev.error or "unknown")
        del self.live[ev.number]
        self.last_epoch.pop(ev.number, None)
        if ev.kind == "done":
            self._note_best(ev.number, ev.value)
        self._notify("finished", outcome)

    def _tell(self, trial: optuna.trial.Trial, ev: Event) -> None:
        if ev.kind == "done":
            self.study.tell(trial, ev.value)
        elif ev.kind == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)

    # ------------------------------------------------------------------ running
    def run(self, executor: Executor) -> Progress:
        """Run until ``target`` trials have finished (or the timeout stops asking for more);
        Ctrl-C marks running trials interrupted (rerun next time) and re-raises."""
        self.progress.started = time.perf_counter()
        self.deadline = None if self.timeout is None else self.progress.started + self.timeout
        self._notify("start")
        heart = Heartbeat(self.study, self.driver_id)
        self.progress.workers = max(1, getattr(executor, "workers", 1) or 1)
        try:
            executor.run(self.specs(), self.on_event)
            self.progress.timing["wall"] = time.perf_counter() - self.progress.started
            self.progress.executor = dict(getattr(executor, "timing", {}))
        except KeyboardInterrupt:
            heart.stop()
            self._interrupted()
            raise
        except Exception as e:
            from tunelab.execute.base import interrupted_write

            heart.stop()
            if not interrupted_write(e):
                raise
            self._interrupted()  # the signal landed inside a storage write
            raise KeyboardInterrupt("interrupted during a storage write") from e
        heart.stop()
        return self.progress

    def _interrupted(self) -> None:
        from tunelab.search.storage import reset_session

        reset_session(self.study)  # a signal inside a write leaves the session broken
        self.abandon("interrupted (Ctrl-C or SIGTERM)")
        # a trial asked but not yet handed out (Ctrl-C between ask and dispatch) is
        # RUNNING in storage without being live; this driver is the only writer, so sweep
        self.sweep_running("interrupted (Ctrl-C or SIGTERM)")

    def sweep_running(self, reason: str) -> None:
        """Mark any trial of this study still RUNNING in storage failed (and requeued)."""
        swept = recover_stale(self.study, reason, requeue_params=self.requeue_params, driver_id=self.driver_id)
        self.progress.interrupted += [n for n in swept if n not in self.progress.interrupted]

    def abandon(self, reason: str) -> None:
        """Mark every trial still in flight failed (requeued for the next run)."""
        for number, trial in list(self.live.items()):
            self._abandon_one(number, trial, reason)
        self.live.clear()
        self.progress.running = 0

    def _abandon_one(self, number: int, trial: optuna.trial.Trial, reason: str) -> None:
        if self.study._storage.get_trial(trial._trial_id).state != TrialState.RUNNING:
            return  # told just before the interrupt
        attrs = {"fail_reason": reason, "requeued": True}
        if number in self.history:
            attrs["history"] = json.loads(json.dumps(self.history[number], default=float))
        self.flush(trial, number, attrs)
        self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        if self.requeue_params:
            self.study.enqueue_trial(trial.params, user_attrs={"retry_of": number}, skip_if_exists=False)
        self.progress.interrupted.append(number)


def _epochs_of(config: dict, validated: bool) -> int:
    """The epochs (evaluation periods, with training.steps) a trial's config runs (a space that does
    not validate its configs: the raw ``training.epochs``, 0 if none)."""
    if not validated:
        return int(config.get("training", {}).get("epochs", 0) or 0)
    from tunelab.config import from_dict

    return from_dict(config).training.epochs
