"""The Ray executor: trials as Ray actors on a cluster, the study driver staying the only writer.

``RayExecutor(address, trial_cpus, trial_gpus, max_retries, workers)`` connects to a Ray cluster
(``address``: ``auto`` for the one ``ray start`` runs on this machine, ``HOST:PORT`` for another,
``local`` to start a private one in this process) and keeps up to ``workers`` actors busy (None:
as many as the cluster's CPUs hold at ``trial_cpus`` each). Each trial runs ``execute_trial`` inside a
Ray actor that declares ``trial_cpus`` CPUs and ``trial_gpus`` GPUs (fractions allowed, so several
small trials share a GPU) and uses that many threads. With ``population_size`` K the executor takes
up to K trials at a time, sorts the mlp/cnn ones into buckets of one structure as the population
executor does, and trains each bucket as one stacked population in one actor (what cannot be
stacked runs one trial per actor). The dataset is loaded once by the driver and
put in Ray's object store; actors read it from there (once per actor) instead of loading it.

Every epoch's metrics go back to the driver through a long poll of the trial's own actor (a second
thread of the actor answers it), and the driver's answer (prune or not) goes back with the next
poll, so pruning works as with the process executor; nothing else sits between driver and actor,
so a node that dies fails only the calls to its actors. The driver waits on the calls' futures and
every few seconds asks the cluster which nodes are dead: a trial whose actor dies (its process, or
its node, whether or not Ray fails the pending calls) is retried on a new actor up to
``max_retries`` times (epochs it had reported are not reported again: a retry with the same seed
retrains them to the same values), then fails with the reason; a population bucket retries its
unfinished members together. A retry prefers a node other than those its attempts died on (a soft
anti-affinity on Ray's node-id label: a node that is dying but not yet known dead is not chosen
again while another has room), and the retried trial records ``died_on``, the node it left. Once
no trial is left to start, idle actors are released, so a retry waiting for a place on a cluster
that lost a node gets one. Ray Tune is not used.

Example:
    >>> RayExecutor.__name__
    'RayExecutor'
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from tunelab.errors import ConfigError, TunelabError
from tunelab.execute.base import Decision, Event, TrialSpec, check_trial_timeout

__all__ = ["RayExecutor", "require_ray", "INSTALL"]

INSTALL = "pip install 'tunelab[ray]'"
_NO_MORE = object()
NODE_CHECK_S = 3.0  # how often the driver asks the cluster which nodes are dead
NODE_LABEL = "ray.io/node-id"  # the label Ray gives every node: its id


def require_ray():
    """The ``ray`` module, or a one-line ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed; install it with: {INSTALL}") from None
    return ray


@dataclass
class _Flight:
    """One actor's unit of work: a trial, or a bucket of trials trained as one population."""

    specs: list
    slot: int
    stacked: bool = False  # train the specs as one population
    attempt: int = 0
    open: set = field(default_factory=set)  # numbers without a final event yet
    reported: dict = field(default_factory=dict)  # number -> the last epoch the driver has seen
    pruned: dict = field(default_factory=dict)  # number -> the driver's last answer
    run: Any = None  # future of the actor's run call (the events no poll took)
    poll: Any = None  # future of the outstanding poll (the events since the last one)
    answers: dict = field(default_factory=dict)  # (number, epoch) -> prune, sent with the next poll
    where: dict = field(default_factory=dict)  # where its last attempt that started ran
    avoid: list = field(default_factory=list)  # nodes where an attempt died: a retry prefers others
    since: float = 0.0  # when its current attempt was handed to an actor (monotonic)

    def __post_init__(self) -> None:
        self.open = {s.number for s in self.specs}


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

            from tunelab.trainer.threads import set_threads

            set_threads(threads, as_default=True)
            self._cond, self._events, self._answers = threading.Condition(), [], {}
            self._ended = False  # the last run has ended: a poll has nothing to wait for

        def run(self, specs: list, data: dict, threads: int, stacked: bool) -> list:
            """Train ``specs`` (one trial, or a bucket as one population); every event goes to the
            polls, and those no poll took are returned."""
            import socket

            from tunelab.trainer import prepare

            where = {"pid": os.getpid(), "host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id(),
                     "threads": threads}
            with self._cond:
                self._events, self._answers, self._ended = [], {}, False
            for key, ref in data.items():  # the driver's copy from the object store, not a load
                if key not in prepare._DATA_CACHE:
                    prepare._DATA_CACHE.clear()
                    prepare._DATA_CACHE[key] = ray.get(ref)

            def send(ev: Event) -> Decision:
                if ev.kind == "start":
                    ev = Event(ev.number, "start", metrics={**ev.metrics, **where})
                with self._cond:
                    self._events.append(ev)
                    self._cond.notify_all()
                    if ev.kind != "epoch":
                        return None
                    while (ev.number, ev.step) not in self._answers:
                        self._cond.wait()
                    return "prune" if self._answers.pop((ev.number, ev.step)) else "continue"

            try:
                if stacked:
                    from tunelab.config import from_dict
                    from tunelab.execute.population import PopulationExecutor

                    PopulationExecutor(len(specs))._population([(s, from_dict(s.config)) for s in specs], send)
                else:
                    from tunelab.execute.trial import execute_trial

                    spec = specs[0]
                    send(Event(spec.number, "start"))
                    send(execute_trial(spec, lambda step, value, metrics: send(
                        Event(spec.number, "epoch", step, value, metrics)) == "prune"))
            finally:  # an outstanding poll returns now, not after its wait, and a later one at once
                with self._cond:
                    out, self._events, self._ended = self._events, [], True
                    self._cond.notify_all()
            return out

        def poll(self, answers: dict, wait: float) -> list:
            """Take the driver's answers; return the events so far (waiting up to ``wait`` s for one)."""
            with self._cond:
                self._answers.update(answers)
                self._cond.notify_all()
                if not self._events and not self._ended:
                    self._cond.wait(wait)
                out, self._events = self._events, []
            return out

    return TrialActor


class RayExecutor:
    """Trials on a Ray cluster (see the module docstring)."""

    def __init__(self, address: str = "auto", trial_cpus: float = 1.0, trial_gpus: float = 0.0,
                 max_retries: int = 1, workers: Optional[int] = None, population_size: Optional[int] = None,
                 trial_timeout: Optional[float] = None) -> None:
        for key, value, lo in (("--trial-cpus", trial_cpus, 0.0), ("--trial-gpus", trial_gpus, 0.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= lo:
                raise ConfigError(f"{key}={value!r} is out of range; allowed: a number >= {lo:g}")
        if trial_cpus <= 0:
            raise ConfigError(f"--trial-cpus={trial_cpus!r} is out of range; allowed: a number > 0")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"--max-retries={max_retries!r} is out of range; allowed: a whole number >= 0")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"--workers={workers!r} is out of range; allowed: a whole number >= 1")
        if population_size is not None and (isinstance(population_size, bool) or not isinstance(population_size, int)
                                            or population_size < 1):
            raise ConfigError(f"--population-size={population_size!r} is out of range; allowed: a whole number >= 1")
        check_trial_timeout(trial_timeout)
        self.trial_timeout = trial_timeout
        if not isinstance(address, str) or not address:
            raise ConfigError(f"--address={address!r} is not allowed; use auto, local or HOST:PORT")
        self.address, self.trial_cpus, self.trial_gpus = address, float(trial_cpus), float(trial_gpus)
        self.max_retries, self.workers, self.population_size = max_retries, workers, population_size
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
        self._next_node_check = time.monotonic() + NODE_CHECK_S
        flight: list[_Flight] = []
        it, more, units = iter(trials), True, []
        try:
            while True:
                while (slot := self._idle_slot(flight)) is not None:
                    if not units and more:
                        units = self._units(it)
                        more = bool(units)
                    if not units:
                        break
                    specs, stacked = units.pop(0)
                    self._dispatch(_Flight(specs, slot, stacked), flight, on_event)
                if not flight:
                    break
                if not more:  # idle actors hold their CPUs: a retry waiting for a place needs them
                    self._release_idle(flight)
                self._pump(flight, on_event)
        finally:
            self.close()

    def _units(self, it) -> list:
        """The next units of work, [(specs, stacked)]: one trial, or with ``population_size`` K the
        buckets of up to K trials (the population executor's split and grouping); [] at the end."""
        if self.population_size is None:
            spec = next(it, _NO_MORE)
            return [] if spec is _NO_MORE else [([spec], False)]
        from itertools import islice

        from tunelab.execute.population import PopulationExecutor
        from tunelab.population import group

        specs = list(islice(it, self.population_size))
        stack, solo = PopulationExecutor._split(specs)
        return ([([stack[i][0] for i in bucket], True) for bucket in group([cfg for _, cfg in stack])]
                + [([spec], False) for spec in solo])

    def _idle_slot(self, flight: list) -> Optional[int]:
        busy = {f.slot for f in flight}
        return next((i for i in range(len(self._slots)) if i not in busy), None)

    def _release_idle(self, flight: list) -> None:
        busy = {f.slot for f in flight}
        for i, slot in enumerate(self._slots):
            if slot is not None and i not in busy:
                self._kill(slot)
                self._slots[i] = None

    def _slot(self, i: int, avoid: list = ()) -> _Slot:
        """Slot ``i``'s actor, started if it has none; ``avoid``: nodes it should not be placed on
        when another node has room (a soft anti-affinity: a retry does not wait for one)."""
        if self._slots[i] is None:
            threads = max(1, int(round(self.trial_cpus)))
            options = {"num_cpus": self.trial_cpus, "num_gpus": self.trial_gpus}
            if avoid:
                from ray.util.scheduling_strategies import NodeLabelSchedulingStrategy, NotIn

                options["scheduling_strategy"] = NodeLabelSchedulingStrategy(hard={}, soft={NODE_LABEL: NotIn(*avoid)})
            self._slots[i] = _Slot(self._actor.options(**options).remote(threads))
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
        slot = self._slot(f.slot, f.avoid)
        try:
            data = self._data_for(f.specs[0])
        except TunelabError as e:
            for number in sorted(f.open):
                on_event(Event(number, "failed", error=str(e)))
            return
        # not waited for: Ray starts the actor where the resources are (or when they free up), and
        # each trial's first event, "start", says where it runs
        specs = [s for s in f.specs if s.number in f.open]
        f.run = slot.actor.run.remote(specs, data, max(1, int(round(self.trial_cpus))), f.stacked).future()
        f.since = time.monotonic()
        f.poll, f.answers = None, {}
        flight.append(f)

    def _pump(self, flight: list, on_event: Callable[[Event], Decision]) -> None:
        """Poll every running trial (long polls: each returns when its trial has an event, or after
        a second); answer the epochs; take the trials that ended; retry those whose actor died.

        The driver waits on the calls' futures, never inside ``ray.wait``: with Ray 2.60 a call to
        an actor on a node that was killed could stay pending for good (and ``ray.wait`` with it),
        so every few seconds the driver also asks the cluster which nodes are dead and counts the
        trials it ran there as died."""
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_futures

        ray = self.ray
        for f in flight:
            if f.poll is None and f.open:  # a unit whose trials all ended has nothing left to say
                ref = self._slots[f.slot].actor.poll.remote(f.answers, 1.0)
                f.poll, f.answers = ref.future(), {}
        futures = [x for f in flight for x in (f.poll, f.run) if x is not None]
        done, _ = wait_futures(futures, timeout=1.5, return_when=FIRST_COMPLETED)
        if time.monotonic() >= self._next_node_check:
            self._next_node_check = time.monotonic() + NODE_CHECK_S
            dead = self._dead_nodes()
            for f in [f for f in flight if self._node_of(f) in dead]:
                flight.remove(f)
                self._retry_or_fail(f, "NodeDied", flight, on_event)
        for f in list(flight):
            try:
                if f.poll is not None and f.poll.done():
                    events, f.poll = f.poll.result(), None
                    self._answer(f, events, on_event)
                if f.run.done():
                    tail = f.run.result()
                    if f.poll is not None:  # a poll that took events before the run ended: first
                        self._answer(f, f.poll.result(timeout=5), on_event)
                    flight.remove(f)
                    self._answer(f, tail, on_event)
                    for number in sorted(f.open):  # not expected: the actor sends every final event
                        on_event(Event(number, "failed", f.reported.get(number, 0), error="ended without a result"))
            except ray.exceptions.RayTaskError as e:  # raised inside the trial (execute_trial catches its own)
                flight.remove(f)
                for number in sorted(f.open):
                    on_event(Event(number, "failed", f.reported.get(number, 0), error=str(e.cause if e.cause else e)))
            except (ray.exceptions.RayError, TimeoutError) as e:  # the actor, its process or its node is gone
                flight.remove(f)
                self._retry_or_fail(f, type(e).__name__, flight, on_event)
        if self.trial_timeout is not None:
            for f in [f for f in flight if time.monotonic() - f.since > self.trial_timeout]:
                flight.remove(f)  # ran too long (hung, or only slow): its actor goes, no retry
                self._kill(self._slots[f.slot])
                self._slots[f.slot] = None
                for number in sorted(f.open):
                    on_event(Event(number, "failed", f.reported.get(number, 0), error=(
                        f"timed out: trial {number} ran longer than --trial-timeout={self.trial_timeout:g} s; "
                        f"its Ray actor was killed")))

    def _dead_nodes(self) -> set:
        """IDs of the cluster's nodes that Ray has marked dead (none when the cluster cannot say)."""
        try:
            return {n["NodeID"] for n in self.ray.nodes() if not n.get("Alive", True)}
        except Exception:  # noqa: BLE001 - the head is busy or restarting: ask again later
            return set()

    def _node_of(self, f: _Flight) -> Optional[str]:
        slot = self._slots[f.slot]
        return (slot.info if slot is not None else {}).get("node") if f.run is not None else None

    def _answer(self, f: _Flight, events: list, on_event: Callable[[Event], Decision]) -> None:
        for ev in events:
            if ev.kind == "start":  # the actor runs it now: where (a retry's new place too)
                if self._slots[f.slot] is not None:
                    self._slots[f.slot].info = ev.metrics
                died_on = {"died_on": f.avoid[-1]} if f.avoid else {}
                on_event(Event(ev.number, "start", metrics={**ev.metrics, "retries": f.attempt, **died_on})
                         if f.attempt else ev)
            elif ev.kind == "epoch":
                if ev.step <= f.reported.get(ev.number, 0):  # a retry retraining an epoch the driver has seen
                    prune = f.pruned.get(ev.number, False)
                else:
                    f.reported[ev.number] = ev.step
                    f.pruned[ev.number] = prune = on_event(ev) == "prune"
                f.answers[(ev.number, ev.step)] = prune
            elif ev.number in f.open:  # done, pruned or failed
                f.open.discard(ev.number)
                on_event(ev)

    def _retry_or_fail(self, f: _Flight, error: str, flight: list,
                       on_event: Callable[[Event], Decision]) -> None:
        """The unit's actor died (its process or its node): a new actor retries its unfinished
        trials, or they fail."""
        where = (self._slots[f.slot].info if self._slots[f.slot] is not None else {}) or f.where
        f.where = where
        if where.get("node") and where["node"] not in f.avoid:
            f.avoid.append(where["node"])
        if self._slots[f.slot] is not None:
            self._kill(self._slots[f.slot])
            self._slots[f.slot] = None
        if not f.open:
            return
        place = f" (pid {where['pid']} on {where.get('host')}, node {str(where.get('node'))[:12]})" if where else ""
        what = f"trial {min(f.open)}" if len(f.open) == 1 else f"trials {sorted(f.open)}"
        reason = f"the Ray worker running {what} died{place}: {error}"
        if f.attempt >= self.max_retries:
            tried = f" after {f.attempt + 1} attempts" if f.attempt else ""
            for number in sorted(f.open):
                on_event(Event(number, "failed", f.reported.get(number, 0), error=reason + tried))
            return
        f.attempt += 1
        self._dispatch(f, flight, on_event)
