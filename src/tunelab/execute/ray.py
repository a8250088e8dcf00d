"""The Ray executor: trials as Ray actors on a cluster, the study driver staying the only writer.

``RayExecutor(address, trial_cpus, trial_gpus, max_retries, workers)`` connects to a Ray cluster
(``address``: ``auto`` for the one ``ray start`` runs on this machine, ``HOST:PORT`` for another,
``local`` to start a private one in this process) and keeps up to ``workers`` trials in flight (None:
as many as the cluster's CPUs hold at ``trial_cpus`` each). Each trial runs ``execute_trial`` inside a
Ray actor that declares ``trial_cpus`` CPUs and ``trial_gpus`` GPUs (fractions allowed, so several
small trials share a GPU) and uses that many threads. The dataset is loaded once by the driver and
put in Ray's object store; actors read it from there (once per actor) instead of loading it.

Every epoch's metrics go back to the driver through a long poll of the trial's own actor (a second
thread of the actor answers it), and the driver's answer (prune or not) goes back with the next
poll, so pruning works as with the process executor; nothing else sits between driver and actor,
so a node that dies fails only the calls to its actors. A trial whose actor dies (its process or its node) is retried on a new actor up to
``max_retries`` times (epochs it had reported are not reported again: a retry with the same seed
retrains them to the same values), then fails with the reason. Ray Tune is not used.

Example:
    >>> RayExecutor.__name__
    'RayExecutor'
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from tunelab.errors import ConfigError, TunelabError
from tunelab.execute.base import Decision, Event, TrialSpec

__all__ = ["RayExecutor", "require_ray", "INSTALL"]

INSTALL = "pip install 'tunelab[ray]'"
_NO_MORE = object()


def require_ray():
    """The ``ray`` module, or a one-line ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed; install it with: {INSTALL}") from None
    return ray


@dataclass
class _Flight:
    spec: TrialSpec
    slot: int
    attempt: int = 0
    reported: int = 0  # the last epoch the driver has seen (a retry does not report it again)
    pruned: bool = False
    run: Any = None  # ObjectRef of the actor's run call (its final Event)
    poll: Any = None  # ObjectRef of the outstanding poll (the events since the last one)
    answers: dict = field(default_factory=dict)  # epoch -> prune, sent with the next poll
    where: dict = field(default_factory=dict)  # where its last attempt that started ran


@dataclass
class _Slot:
    actor: Any
    info: dict = field(default_factory=dict)


def _actor_class(ray):
    @ray.remote(max_restarts=0, max_task_retries=0, max_concurrency=2)
    class TrialActor:
        """One trial at a time in this actor's process (``run``), the dataset from the object store;
        ``poll`` (the actor's second thread) hands the driver the events since the last poll and the
        running trial the driver's answers. No other actor is in between: when this actor or its
        node dies, only the calls to it fail."""

        def __init__(self, threads: int) -> None:
            import threading

            from tunelab.trainer.prepare import set_threads

            set_threads(threads, as_default=True)
            self._cond, self._events, self._answers = threading.Condition(), [], {}

        def run(self, spec: TrialSpec, data: dict, threads: int) -> Event:
            import socket

            from tunelab.execute.trial import execute_trial
            from tunelab.trainer import prepare

            where = {"pid": os.getpid(), "host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id(),
                     "threads": threads}
            with self._cond:
                self._events, self._answers = [Event(spec.number, "start", metrics=where)], {}
                self._cond.notify_all()
            for key, ref in data.items():  # the driver's copy from the object store, not a load
                if key not in prepare._DATA_CACHE:
                    prepare._DATA_CACHE.clear()
                    prepare._DATA_CACHE[key] = ray.get(ref)

            def report(step: int, value: float, metrics: dict) -> bool:
                with self._cond:
                    self._events.append(Event(spec.number, "epoch", step, value, metrics))
                    self._cond.notify_all()
                    while step not in self._answers:
                        self._cond.wait()
                    return bool(self._answers.pop(step))

            try:
                return execute_trial(spec, report)
            finally:  # an outstanding poll returns now, not after its wait
                with self._cond:
                    self._cond.notify_all()

        def poll(self, answers: dict, wait: float) -> list:
            """Take the driver's answers; return the events so far (waiting up to ``wait`` s for one)."""
            with self._cond:
                self._answers.update(answers)
                self._cond.notify_all()
                if not self._events:
                    self._cond.wait(wait)
                out, self._events = self._events, []
            return out

    return TrialActor


class RayExecutor:
    """Trials on a Ray cluster (see the module docstring)."""

    def __init__(self, address: str = "auto", trial_cpus: float = 1.0, trial_gpus: float = 0.0,
                 max_retries: int = 1, workers: Optional[int] = None) -> None:
        for key, value, lo in (("--trial-cpus", trial_cpus, 0.0), ("--trial-gpus", trial_gpus, 0.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= lo:
                raise ConfigError(f"{key}={value!r} is out of range; allowed: a number >= {lo:g}")
        if trial_cpus <= 0:
            raise ConfigError(f"--trial-cpus={trial_cpus!r} is out of range; allowed: a number > 0")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"--max-retries={max_retries!r} is out of range; allowed: a whole number >= 0")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"--workers={workers!r} is out of range; allowed: a whole number >= 1")
        if not isinstance(address, str) or not address:
            raise ConfigError(f"--address={address!r} is not allowed; use auto, local or HOST:PORT")
        self.address, self.trial_cpus, self.trial_gpus = address, float(trial_cpus), float(trial_gpus)
        self.max_retries, self.workers = max_retries, workers
        self.ray = require_ray()
        self._started = False  # this executor started Ray (and shuts it down)
        self._slots: list[Optional[_Slot]] = []

    # ------------------------------------------------------------------ cluster
    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        try:
            if self.address == "local":
                ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        except ConnectionError as e:
            raise ConfigError(f"--address={self.address!r}: no Ray cluster there ({str(e).splitlines()[0]}); "
                              f"start one with `ray start --head`, or use --address local") from None
        self._started = True

    def _capacity(self) -> int:
        if self.workers is not None:
            return self.workers
        cpus = self.ray.cluster_resources().get("CPU", 1.0)
        return max(1, int(cpus // self.trial_cpus))

    def close(self) -> None:
        for slot in self._slots:
            if slot is not None:
                self._kill(slot)
        self._slots = []
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _kill(self, slot: _Slot) -> None:
        try:
            self.ray.kill(slot.actor)
        except Exception:  # noqa: BLE001 - already gone
            pass

    # ------------------------------------------------------------------ the run loop
    def run(self, trials: Iterable[TrialSpec], on_event: Callable[[Event], Decision]) -> None:
        ray = self.ray
        self._connect()
        self._actor = _actor_class(ray)
        self._data: dict[tuple, Any] = {}  # data key -> ObjectRef of the bundle (put once)
        self._slots = [None] * self._capacity()
        flight: list[_Flight] = []
        it, more = iter(trials), True
        try:
            while True:
                while more and (slot := self._idle_slot(flight)) is not None:
                    spec = next(it, _NO_MORE)
                    if spec is _NO_MORE:
                        more = False
                        break
                    self._dispatch(_Flight(spec, slot), flight, on_event)
                if not flight:
                    break
                self._pump(flight, on_event)
        finally:
            self.close()

    def _idle_slot(self, flight: list) -> Optional[int]:
        busy = {f.slot for f in flight}
        return next((i for i in range(len(self._slots)) if i not in busy), None)

    def _slot(self, i: int) -> _Slot:
        if self._slots[i] is None:
            threads = max(1, int(round(self.trial_cpus)))
            actor = self._actor.options(num_cpus=self.trial_cpus, num_gpus=self.trial_gpus).remote(threads)
            self._slots[i] = _Slot(actor)
        return self._slots[i]

    def _data_for(self, spec: TrialSpec) -> dict:
        """{cache key: ObjectRef} of the spec's dataset, loaded and put in the object store once."""
        from tunelab.config import from_dict
        from tunelab.trainer.prepare import load_run_data, resolve_device

        if spec.fn is not None:
            return {}
        try:
            cfg = from_dict(spec.config)
        except TunelabError:
            return {}  # the trial reports its config error itself
        key = (repr(cfg.data), str(resolve_device(cfg.training.device)))
        if key not in self._data:
            self._data = {key: self.ray.put(load_run_data(cfg))}  # one dataset at a time, as a worker keeps
        return {key: self._data[key]}

    def _dispatch(self, f: _Flight, flight: list, on_event: Callable[[Event], Decision]) -> None:
        slot = self._slot(f.slot)
        try:
            data = self._data_for(f.spec)
        except TunelabError as e:
            on_event(Event(f.spec.number, "failed", error=str(e)))
            return
        # not waited for: Ray starts the actor where the resources are (or when they free up), and
        # the trial's first event, "start", says where it runs
        f.run = slot.actor.run.remote(f.spec, data, max(1, int(round(self.trial_cpus))))
        f.poll, f.answers = None, {}
        flight.append(f)

    def _pump(self, flight: list, on_event: Callable[[Event], Decision]) -> None:
        """Poll every running trial (long polls: each returns when its trial has an event, or after
        a second); answer the epochs; take the trials that ended; retry those whose actor died."""
        ray = self.ray
        for f in flight:
            if f.poll is None:
                f.poll, f.answers = self._slots[f.slot].actor.poll.remote(f.answers, 1.0), {}
        refs = [r for f in flight for r in (f.poll, f.run)]
        ready, _ = ray.wait(refs, num_returns=1, timeout=1.0, fetch_local=False)
        if not ready:
            return
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        ready = set(ready)
        for f in list(flight):
            try:
                if f.poll in ready:
                    events, f.poll = ray.get(f.poll), None
                    self._answer(f, events, on_event)
                if f.run in ready:
                    final = ray.get(f.run)
                    if f.poll is not None:  # the start of a trial that failed before its first epoch
                        self._answer(f, ray.get(f.poll, timeout=5), on_event)
                    flight.remove(f)
                    on_event(final)
            except ray.exceptions.RayTaskError as e:  # raised inside the trial (execute_trial catches its own)
                flight.remove(f)
                on_event(Event(f.spec.number, "failed", f.reported, error=str(e.cause if e.cause else e)))
            except ray.exceptions.RayError as e:  # the actor, its process or its node is gone
                flight.remove(f)
                self._retry_or_fail(f, e, flight, on_event)

    def _answer(self, f: _Flight, events: list, on_event: Callable[[Event], Decision]) -> None:
        for ev in events:
            if ev.kind == "start":  # the actor runs it now: where (a retry's new place too)
                if self._slots[f.slot] is not None:
                    self._slots[f.slot].info = ev.metrics
                on_event(ev)
                continue
            if ev.step <= f.reported:  # a retry retraining an epoch the driver has seen
                prune = f.pruned
            else:
                f.reported = ev.step
                f.pruned = prune = on_event(ev) == "prune"
            f.answers[ev.step] = prune

    def _retry_or_fail(self, f: _Flight, error: BaseException, flight: list,
                       on_event: Callable[[Event], Decision]) -> None:
        """The trial's actor died (its process or its node): a new actor retries it, or it fails."""
        where = (self._slots[f.slot].info if self._slots[f.slot] is not None else {}) or f.where
        f.where = where
        if self._slots[f.slot] is not None:
            self._kill(self._slots[f.slot])
            self._slots[f.slot] = None
        place = f" (pid {where['pid']} on {where.get('host')}, node {str(where.get('node'))[:12]})" if where else ""
        reason = f"the Ray worker running trial {f.spec.number} died{place}: {type(error).__name__}"
        if f.attempt >= self.max_retries:
            tried = f" after {f.attempt + 1} attempts" if f.attempt else ""
            on_event(Event(f.spec.number, "failed", f.reported, error=reason + tried))
            return
        f.attempt += 1
        self._dispatch(f, flight, on_event)
