"""The study driver: the single writer to storage.

It asks the sampler for a trial only when the executor has a free slot, hands the trial's
resolved config to the executor, reports each epoch's value to the pruner and answers
"prune" or "continue", and tells Optuna the outcome (complete, pruned, failed with the
reason). Every trial keeps its config, per-epoch history, status, duration, seed and the
library versions as user attributes, so a study opens in optuna-dashboard as it is.

Resuming: a trial left RUNNING by a driver that was killed is marked failed (reason:
interrupted) and its parameters are queued again; finished trials are never rerun, and the
study goes on until ``trials`` trials have finished.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import optuna
from optuna.trial import TrialState

from tunelab.errors import ConfigError
from tunelab.execute.base import Decision, Event, Executor, TrialSpec
from tunelab.search.space import SearchSpace

__all__ = ["StudyDriver", "Progress", "versions", "finished_count", "recover_stale", "tensorboard_root",
           "TENSORBOARD_ROOT"]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
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


@dataclass
class Progress:
    """Live counts for the progress display (plain data)."""

    target: int
    done: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    best: Optional[float] = None
    best_number: Optional[int] = None
    started: float = field(default_factory=time.perf_counter)
    last_error: str = ""

    @property
    def finished(self) -> int:
        return self.done + self.pruned + self.failed

    def eta(self, finished_this_run: int) -> Optional[float]:
        """Seconds left, from this run's mean time per finished trial."""
        if finished_this_run <= 0:
            return None
        per = (time.perf_counter() - self.started) / finished_this_run
        return per * max(self.target - self.finished, 0)


def _requeued(t: optuna.trial.FrozenTrial) -> bool:
    return bool(t.user_attrs.get("requeued"))


def finished_count(study: optuna.Study) -> int:
    """Trials that count toward the budget: finished, except failures that were requeued."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state in FINISHED and not _requeued(t))


def recover_stale(study: optuna.Study, reason: str = "interrupted: the driver stopped while it ran",
                  requeue_params: bool = True) -> list[int]:
    """Mark RUNNING trials failed (they belong to a driver that is gone) and requeue their params."""
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for t in stale:
        study._storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
        study._storage.set_trial_user_attr(t._trial_id, "requeued", True)
        study.tell(t.number, state=TrialState.FAIL)
        if requeue_params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
    return [t.number for t in stale]


class StudyDriver:
    """Runs one Optuna study (or one stage of a staged study) through an executor."""

    requeue_params = True  # an interrupted trial's parameters are asked again on the next run

    def __init__(self, study: optuna.Study, space: Optional[SearchSpace], keys: list[str], base: dict,
                 target: int, objective_fn: Optional[Callable[..., float]] = None,
                 on_progress: Optional[Callable[[Progress], None]] = None,
                 log_root: Optional[Path] = None, run_root: Optional[Path] = None) -> None:
        self.study, self.space, self.keys, self.base = study, space, keys, base
        self.run_root = run_root  # trial run folders (None: trials keep no folder)
        self.log_root = log_root if log_root is not None else tensorboard_root(study.study_name)
        self.target, self.fn, self.on_progress = target, objective_fn, on_progress
        self.dists = space.optuna_params(keys) if space is not None else {}
        self.live: dict[int, optuna.trial.Trial] = {}
        self.t0: dict[int, float] = {}
        self.history: dict[int, list] = {}
        self.progress = Progress(target)
        self.finished_this_run = 0
        self._count_existing()

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
        self._update_best()

    def _update_best(self) -> None:
        try:
            best = self.study.best_trial
            self.progress.best, self.progress.best_number = best.value, best.number
        except ValueError:  # no completed trial yet
            pass

    def _remaining(self) -> int:
        return self.target - self.progress.finished - len(self.live)

    # ------------------------------------------------------------------ asking
    def specs(self) -> Iterator[TrialSpec]:
        """Lazily asked trials: the executor pulls one when it has a free slot."""
        while self._remaining() > 0:
            trial = self.study.ask(self.dists)
            values = self.space.decode({k: v for k, v in trial.params.items()})
            try:
                config = self.space.apply(self.base, values)
            except ConfigError as e:  # a combination the config rejects: a failed trial, not a crash
                trial.set_user_attr("fail_reason", f"invalid config: {e}")
                self.study.tell(trial, state=TrialState.FAIL)
                self.progress.failed += 1
                continue
            seed = int(config.get("training", {}).get("seed", 0)) if isinstance(config, dict) else 0
            for key, value in (("config", config), ("params", values), ("seed", seed),
                               ("versions", versions())):
                trial.set_user_attr(key, value)
            log_dir = self.log_dir(trial, config)
            self.live[trial.number], self.t0[trial.number] = trial, time.perf_counter()
            self.progress.running = len(self.live)
            yield TrialSpec(trial.number, config, self.space.objective_metric, self.fn, seed, log_dir=log_dir,
                            run_dir=self.run_dir(trial))

    def run_dir(self, trial: optuna.trial.Trial) -> Optional[str]:
        """The trial's run folder when the study keeps them (the trial's ``run_dir`` attribute;
        absolute, so worker processes agree on it)."""
        from tunelab.trainer.runfolder import fresh_dir

        if self.run_root is None or self.fn is not None:
            return None
        path = str(fresh_dir(self.run_root, f"trial-{trial.number:04d}").resolve())
        trial.set_user_attr("run_dir", path)
        return path

    def log_dir(self, trial: optuna.trial.Trial, config: dict) -> Optional[str]:
        """The trial's TensorBoard folder when its config asks for one (kept as the trial's
        ``tensorboard`` attribute); a folder left by an earlier study of the same name is not
        reused. The path is absolute so worker processes agree on it."""
        from tunelab.trainer.runfolder import fresh_dir
        from tunelab.trainer.tensorboard import wants_tensorboard

        if self.fn is not None or not wants_tensorboard(config):
            return None
        path = str(fresh_dir(self.log_root, f"trial-{trial.number:04d}").resolve())
        trial.set_user_attr("tensorboard", path)
        return path

    # ------------------------------------------------------------------ events
    def on_event(self, ev: Event) -> Decision:
        trial = self.live.get(ev.number)
        if trial is None:
            return None
        if ev.kind == "start":
            trial.set_user_attr("pid", ev.metrics.get("pid"))
            return None
        if ev.kind == "epoch":
            self.history.setdefault(ev.number, []).append(ev.metrics)
            trial.report(ev.value, ev.step)
            return "prune" if trial.should_prune() else "continue"
        self._finish(trial, ev)
        return None

    def _finish(self, trial: optuna.trial.Trial, ev: Event) -> None:
        history = ev.metrics.get("history", self.history.get(ev.number, []))
        trial.set_user_attr("history", json.loads(json.dumps(history, default=float)))
        trial.set_user_attr("duration_s", round(time.perf_counter() - self.t0[ev.number], 3))
        summary = {k: v for k, v in ev.metrics.items() if k != "history"}
        if summary:
            trial.set_user_attr("result", json.loads(json.dumps(summary, default=str)))
        p = self.progress
        if ev.kind == "done":
            self.study.tell(trial, ev.value)
            p.done += 1
        elif ev.kind == "pruned":
            trial.set_user_attr("pruned_at_epoch", ev.step)
            self.study.tell(trial, state=TrialState.PRUNED)
            p.pruned += 1
        else:
            trial.set_user_attr("fail_reason", ev.error[:2000] or "unknown")
            self.study.tell(trial, state=TrialState.FAIL)
            p.failed += 1
            p.last_error = ev.error.splitlines()[0] if ev.error else ""
        del self.live[ev.number]
        self.finished_this_run += 1
        p.running = len(self.live)
        self._update_best()
        if self.on_progress:
            self.on_progress(p)

    # ------------------------------------------------------------------ running
    def run(self, executor: Executor) -> Progress:
        """Run until ``target`` trials have finished; Ctrl-C marks running trials and re-raises."""
        try:
            executor.run(self.specs(), self.on_event)
        except KeyboardInterrupt:
            self.abandon("interrupted by Ctrl-C")
            # a trial asked but not yet handed out (Ctrl-C between ask and dispatch) is
            # RUNNING in storage without being live; this driver is the only writer, so sweep
            self.sweep_running("interrupted by Ctrl-C")
            raise
        return self.progress

    def sweep_running(self, reason: str) -> None:
        """Mark any trial of this study still RUNNING in storage failed (and requeued)."""
        recover_stale(self.study, reason, requeue_params=self.requeue_params)

    def abandon(self, reason: str) -> None:
        """Mark every trial still in flight failed (requeued for the next run)."""
        for number, trial in list(self.live.items()):
            if self.study._storage.get_trial(trial._trial_id).state != TrialState.RUNNING:
                continue  # told just before the interrupt
            trial.set_user_attr("fail_reason", reason)
            trial.set_user_attr("requeued", True)
            if number in self.history:
                trial.set_user_attr("history", json.loads(json.dumps(self.history[number], default=float)))
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            if self.requeue_params:
                self.study.enqueue_trial(trial.params, user_attrs={"retry_of": number}, skip_if_exists=False)
        self.live.clear()
