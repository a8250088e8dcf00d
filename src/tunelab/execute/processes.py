"""The process executor: N long-lived worker processes, one trial each at a time.

Each worker is a spawned process that loops: receive a TrialSpec, run ``execute_trial``,
stream its events back over its own pipe, and for every epoch event wait for the driver's
decision (continue or prune) before training on. Workers live across trials, so the dataset
that ``execute_trial`` caches per process is loaded once per worker, not once per trial.

The driver side (``run``) keeps at most ``workers`` trials in flight and pulls the next spec
from the iterator only when a worker is idle, so the sampler is asked lazily and sees every
result that has arrived. All events reach ``on_event`` in the driver's process, in order per
trial: start, epoch..., then done, pruned or failed. A worker that dies mid-trial (killed,
segfault, ``os._exit``) turns its trial into a failed event and is replaced.

Processes split the cores: each worker sets ``torch.set_num_threads`` to its share of the
cores (the cores other work leaves free, ``auto_threads``, divided by ``workers``, at least 1).
Two workers that each use every core fight over them, and small models often train several
times faster with one thread per process. Once no trial is left to start, a worker's idle cores go
to the trials still running: the answer to each epoch carries the thread count the trial trains
its next epoch with (the cores free at that moment, not counting our own workers, split among the
running trials), unless its config sets ``training.threads``.

Each ready worker sends a heartbeat every ``BEAT_S`` seconds from a thread of its own; a worker
silent for ``heartbeat_timeout`` (stopped, deadlocked) has its trial failed and is replaced, with
no trial timeout set.

Example:
    >>> from tunelab.execute.base import TrialSpec
    >>> specs = (TrialSpec(n, {"training": {"epochs": 1}, "model": {"hidden": [16]}})
    ...          for n in range(4))
    >>> with ProcessExecutor(2) as ex:                       # doctest: +SKIP
    ...     ex.run(specs, lambda ev: print(ev.number, ev.kind))
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterable, Optional

from tunelab.errors import ConfigError, TunelabError
from tunelab.execute.base import Decision, Event, TrialSpec, check_trial_timeout

__all__ = ["ProcessExecutor", "available_cores"]

_NO_MORE = object()
_MAX_STARTUP_DEATHS = 3  # consecutive workers dying before they are ready: give up
BEAT_S = 2.0  # a ready worker says it is alive this often, from a thread of its own
HEARTBEAT_TIMEOUT_S = 60.0  # a ready worker silent this long is hung or stopped: its trial fails
_LIVE: "weakref.WeakSet[ProcessExecutor]" = weakref.WeakSet()


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------- worker side
def _worker_main(conn: Connection, threads: int, spawned: float = 0.0) -> None:
    """Body of a worker process. Never prints; every trial ends in exactly one final event.
    ``spawned``: the driver's ``time.time()`` when it started the process (the ready message says
    how long the start took: the interpreter, torch, tunelab)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    import torch

    from tunelab.trainer.threads import set_threads

    set_threads(threads, as_default=True)  # this worker's share is what training.threads null means here
    conn = _Locked(conn)  # the heartbeat thread sends on it too
    try:
        conn.send(("ready", (torch.get_num_threads(), max(time.time() - spawned, 0.0) if spawned else 0.0)))
        threading.Thread(target=_beat, args=(conn,), daemon=True, name="tunelab-heartbeat").start()
        while (msg := conn.recv()) is not None:  # None: the driver asks us to exit
            number, payload = msg
            set_threads(threads)  # the worker's share again: the last trial's training.threads may differ
            final = _run_one(conn, number, payload)
            try:
                conn.send(("final", final))
            except OSError:
                raise
            except Exception as e:  # a result that does not pickle (nothing was written)
                conn.send(("final", Event(number, "failed", error=f"result cannot be sent back: {e!r}")))
    except (EOFError, OSError, ValueError):  # the driver is gone: exit quietly
        pass
    # Skip interpreter finalization: tearing down torch's modules takes a second or more,
    # and this process holds nothing to finalize but the user's buffered output.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(0)


class _Locked:
    """A worker's end of the pipe whose sends are serialized (the trial's and the heartbeat's)."""

    def __init__(self, conn: Connection) -> None:
        self.conn, self.lock = conn, threading.Lock()

    def send(self, obj: Any) -> None:
        with self.lock:
            self.conn.send(obj)

    def recv(self) -> Any:
        return self.conn.recv()


def _beat(conn: _Locked) -> None:
    """Say "alive" every BEAT_S seconds until the pipe closes. Torch releases the interpreter lock
    in its kernels, so this runs while a trial trains; a stopped or deadlocked process falls silent."""
    while True:
        time.sleep(BEAT_S)
        try:
            conn.send(("beat", None))
        except (OSError, ValueError, EOFError):
            return


def _run_one(conn: Connection, number: int, payload: bytes) -> Event:
    from tunelab.execute.trial import execute_trial
    from tunelab.trainer.threads import set_threads

    fixed = {"threads": True}

    def report(step: int, value: float, metrics: dict) -> bool:
        try:
            conn.send(("epoch", Event(number, "epoch", step, value, metrics)))
            prune, threads = conn.recv()  # the decision, and the threads to train on with
        except (EOFError, OSError):  # the driver is gone: nobody waits for this trial
            os._exit(0)
        if not fixed["threads"]:
            set_threads(threads)
        return bool(prune)

    try:
        spec: TrialSpec = pickle.loads(payload)
        fixed["threads"] = (spec.config.get("training") or {}).get("threads") is not None
        return execute_trial(spec, report)
    except BaseException as e:  # should not happen (execute_trial catches), but never escape
        return Event(number, "failed", error=f"{type(e).__name__} in worker process: {e}")


# ---------------------------------------------------------------------------- driver side
@dataclass
class _Worker:
    process: Any  # multiprocessing.Process of the chosen context
    conn: Connection
    ready: bool = False


class ProcessExecutor:
    """Runs trials in ``workers`` long-lived processes, at most one trial per worker.

    Workers started by ``start()`` (or ``with ProcessExecutor(n) as ex:``) live until
    ``close()``; workers that ``run()`` had to start itself are stopped when it returns.
    On KeyboardInterrupt (or any error) in the driver the workers are terminated and the
    exception re-raised; ``running()`` then lists the trials that were in flight.
    """

    def __init__(self, workers: int, threads_per_worker: Optional[int] = None,
                 start_method: str = "spawn", trial_timeout: Optional[float] = None,
                 heartbeat_timeout: float = HEARTBEAT_TIMEOUT_S) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ConfigError(f"--workers={workers!r} is not allowed; use a whole number >= 1")
        check_trial_timeout(trial_timeout)
        self.trial_timeout, self.heartbeat_timeout = trial_timeout, heartbeat_timeout
        self._heard: dict[int, float] = {}  # slot -> when its worker last said anything (monotonic)
        if threads_per_worker is not None and threads_per_worker < 1:
            raise ConfigError(f"threads_per_worker={threads_per_worker!r} must be >= 1")
        methods = mp.get_all_start_methods()
        if start_method not in methods:
            raise ConfigError(f"start_method={start_method!r} is not known; choose one of {sorted(methods)}")
        self.workers = workers
        if threads_per_worker is None:  # the cores other work leaves free, split among the workers
            from tunelab.trainer.threads import auto_threads, machine_load, usable_cores

            threads_per_worker = auto_threads(usable_cores(), machine_load(), workers)
            self._lend: Optional[int] = None  # measured when no trial is left to start
        else:
            self._lend = threads_per_worker * workers  # the user's numbers: all of them
        self.threads = threads_per_worker
        self._more, self._budget = True, threads_per_worker  # trials are left to start; threads to lend
        self._ctx = mp.get_context(start_method)
        self._slots: list[Optional[_Worker]] = [None] * workers
        self._flight: dict[int, int] = {}  # slot -> number of the trial it runs
        self._since: dict[int, float] = {}  # slot -> when its trial was handed over (monotonic)
        self._kept = False  # workers outlive run() only when started explicitly
        self._startup_deaths = 0
        self.timing: dict[str, float] = {}  # process_start: seconds workers took to get ready, summed
        _LIVE.add(self)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "ProcessExecutor":
        """Start the workers now (they load torch meanwhile) and keep them until close()."""
        self._kept = True
        for i, w in enumerate(self._slots):
            if w is None:
                self._spawn(i)
        return self

    def close(self) -> None:
        """Stop every worker: ask it to exit, then terminate and kill stragglers."""
        self._kept = False
        for w in self._workers():
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        self._reap_all(grace=5.0)

    def terminate(self) -> None:
        """Stop every worker at once (mid-trial too): terminate, join briefly, then kill."""
        for w in self._workers():
            if w.process.is_alive():
                w.process.terminate()
        self._reap_all(grace=2.0)

    def running(self) -> list[int]:
        """Numbers of the trials in flight (after an interrupt: those cut short)."""
        return sorted(self._flight.values())

    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [w.process.pid for w in self._workers()]

    def __enter__(self) -> "ProcessExecutor":
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.terminate()
        self.close()

    def __del__(self) -> None:
        try:
            self.terminate()
        except Exception:
            pass

    # ------------------------------------------------------------------ the run loop
    def run(self, trials: Iterable[TrialSpec], on_event: Callable[[Event], Decision]) -> None:
        """Run ``trials`` (pulled lazily, at most ``workers`` in flight), streaming events."""
        it, more = iter(trials), True
        self._more = True
        self._flight.clear()
        owned = not self._kept
        try:
            for i, w in enumerate(self._slots):
                if w is None:
                    self._spawn(i)
            while True:
                while more and (slot := self._idle_slot()) is not None:
                    spec = next(it, _NO_MORE)
                    if spec is _NO_MORE:
                        more = self._more = False
                        self._budget = self._lend if self._lend is not None else self._free_now()
                    else:
                        self._dispatch(slot, spec, on_event)
                if not self._flight:
                    break
                self._wait_once(on_event, respawn=more)
        except BaseException:
            self.terminate()
            raise
        if owned:
            self.close()

    def _idle_slot(self) -> Optional[int]:
        return next((i for i in range(self.workers) if i not in self._flight), None)

    def _dispatch(self, i: int, spec: TrialSpec, on_event: Callable[[Event], Decision]) -> None:
        try:
            payload = pickle.dumps(spec)
        except Exception as e:
            on_event(Event(spec.number, "failed", error=(
                f"trial {spec.number} cannot be sent to a worker process ({type(e).__name__}: {e}); "
                "a user objective must be a module-level function")))
            return
        for _ in range(2):  # an idle worker may have died unnoticed: replace it once
            w = self._slots[i] or self._spawn(i)
            try:
                w.conn.send((spec.number, payload))
                break
            except OSError:
                self._bury(i)
        else:
            raise TunelabError(f"cannot hand trial {spec.number} to a worker process")
        self._flight[i], self._since[i] = spec.number, time.monotonic()
        self._heard[i] = self._since[i]
        on_event(Event(spec.number, "start", metrics={"pid": w.process.pid, "threads": self.threads}))

    def _wait_once(self, on_event: Callable[[Event], Decision], respawn: bool) -> None:
        owner: dict[Any, tuple[int, _Worker]] = {}
        for i, w in enumerate(self._slots):
            if w is not None:
                owner[w.conn] = owner[w.process.sentinel] = (i, w)
        for obj in wait(list(owner), timeout=self._until_timeout()):
            i, w = owner[obj]
            if self._slots[i] is not w:  # already buried through its other handle
                continue
            if obj is w.conn:  # one message per wake-up, so a chatty trial cannot starve others
                try:
                    msg = w.conn.recv()
                    self._heard[i] = time.monotonic()
                    self._handle(i, msg, on_event)
                    continue
                except (EOFError, OSError):
                    pass
            self._on_death(i, on_event, respawn)
        self._expire(on_event, respawn)

    def _until_timeout(self) -> Optional[float]:
        """Seconds until the first trial in flight runs out of ``trial_timeout`` or its ready worker
        out of heartbeat (None: nothing in flight)."""
        if not self._flight:
            return None
        ends = [self._heard[i] + self.heartbeat_timeout for i in self._flight if self._slots[i].ready]
        if self.trial_timeout is not None:
            ends += [self._since[i] + self.trial_timeout for i in self._flight]
        return max(0.0, min(ends) - time.monotonic()) if ends else None

    def _expire(self, on_event: Callable[[Event], Decision], respawn: bool) -> None:
        """Fail the trials that ran past ``trial_timeout`` or whose ready worker fell silent for
        ``heartbeat_timeout`` (stopped, deadlocked); their workers are killed and replaced."""
        now = time.monotonic()
        for i in list(self._flight):
            pid = self._slots[i].process.pid
            if self.trial_timeout is not None and now - self._since[i] > self.trial_timeout:
                why = (f"timed out: trial {self._flight[i]} ran longer than "
                       f"--trial-timeout={self.trial_timeout:g} s; its worker process {pid} was killed")
            elif self._slots[i].ready and now - self._heard[i] > self.heartbeat_timeout:
                why = (f"worker process {pid} stopped answering (no heartbeat for {self.heartbeat_timeout:g} s: "
                       f"stopped or deadlocked) while running trial {self._flight[i]}; it was killed")
            else:
                continue
            self._slots[i].process.kill()  # SIGKILL also ends a stopped (SIGSTOP) process
            self._bury(i)
            number = self._flight.pop(i)
            if respawn:
                self._spawn(i)
            on_event(Event(number, "failed", error=why))

    def _handle(self, i: int, msg: tuple, on_event: Callable[[Event], Decision]) -> None:
        w = self._slots[i]
        kind, body = msg
        if kind == "beat":
            return
        if kind == "ready":
            w.ready, self._startup_deaths = True, 0
            self.timing["process_start"] = self.timing.get("process_start", 0.0) + body[1]
        elif kind == "epoch":
            prune = on_event(body) == "prune"
            try:
                w.conn.send((prune, self._share()))
            except OSError:  # it died after reporting; its sentinel tells us next
                pass
        else:  # final: done, pruned or failed
            on_event(body)
            self._flight.pop(i, None)

    def _share(self) -> int:
        """Threads for a running trial's next epoch: its worker's share while trials are left to
        start, then the budget split among the trials still running."""
        if self._more:
            return self.threads
        return max(self.threads, self._budget // max(len(self._flight), 1))

    def _free_now(self) -> int:
        """Threads the running trials may share: the workers' threads, or fewer when other work
        keeps cores busy now (one thread too many on a busy core costs far more than it gains)."""
        from tunelab.trainer.threads import free_cores

        return min(self.threads * self.workers, free_cores(self.pids()))

    def _on_death(self, i: int, on_event: Callable[[Event], Decision], respawn: bool) -> None:
        w = self._slots[i]
        try:  # messages it sent before dying come first, to keep each trial's order
            while w.conn.poll():
                self._handle(i, w.conn.recv(), on_event)
        except (EOFError, OSError):
            pass
        pid, code = w.process.pid, self._bury(i)
        number = self._flight.pop(i, None)
        if respawn:
            self._spawn(i)
        if number is not None:
            on_event(Event(number, "failed", error=(
                f"worker process {pid} died (exit code {code}) while running trial {number}")))
        if not w.ready:
            self._startup_deaths += 1
            if self._startup_deaths >= _MAX_STARTUP_DEATHS:
                raise TunelabError(
                    f"worker processes die while starting (last exit code {code}); "
                    "run with one worker (--executor inline) to see the error")

    # ------------------------------------------------------------------ processes
    def _spawn(self, i: int) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_worker_main, args=(child, self.threads, time.time()),
                                 name=f"tunelab-worker-{i}")
        proc.start()
        child.close()  # the worker holds its own end; ours must go so EOF shows when it dies
        self._slots[i] = _Worker(proc, parent)
        return self._slots[i]

    def _bury(self, i: int) -> Optional[int]:
        """Forget slot i's dead (or dying) worker; returns its exit code."""
        w, self._slots[i] = self._slots[i], None
        _stop(w.process, grace=1.0)
        w.conn.close()
        return w.process.exitcode

    def _workers(self) -> list[_Worker]:
        return [w for w in self._slots if w is not None]

    def _reap_all(self, grace: float) -> None:
        for i, w in enumerate(self._slots):
            if w is not None:
                _stop(w.process, grace)
                w.conn.close()
                self._slots[i] = None


def _stop(proc: Any, grace: float) -> None:
    """Join ``proc`` for ``grace`` seconds, then terminate, then kill; always reaps it."""
    proc.join(grace)
    if proc.is_alive():
        proc.terminate()
        proc.join(1.0)
    if proc.is_alive():
        proc.kill()
        proc.join()


@atexit.register
def _terminate_all() -> None:
    """Never leave orphans: stop the workers of executors nobody closed."""
    for ex in list(_LIVE):
        ex.terminate()
