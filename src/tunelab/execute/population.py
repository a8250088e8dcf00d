"""The population executor: up to K trials at a time trained as one stacked computation.

It pulls up to ``size`` specs, sorts the mlp and cnn trials into buckets of one structure
(``tunelab.population.group``: data, model shape, optimizer kind, batch size...) and trains each
bucket with ``train_population``; every member streams its epoch events to the driver like a trial
of the other executors, and a "prune" answer stops that member at once (the others go on). What the
population cannot stack runs one by one in this process, as the inline executor would: user-registered models,
user objectives, trials with a live folder (``--trial-folders``) or a TensorBoard log.

The K specs are asked before any of them reports, as with K parallel workers: a sequential sampler
(TPE) then proposes K trials from what it knew when the population began. With ``workers`` > 1 each
bucket is split among that many long-lived worker processes, one population per process (on a
CPU, two processes use two cores better than one process with two threads).

Example:
    >>> from tunelab.execute.base import TrialSpec
    >>> specs = [TrialSpec(i, {"model": {"hidden": [8]}, "optimizer": {"lr": lr}, "training": {"epochs": 1}})
    ...          for i, lr in enumerate([1e-3, 1e-2])]
    >>> seen = []
    >>> PopulationExecutor(4).run(iter(specs), lambda ev: seen.append((ev.number, ev.kind)))
    >>> sorted(seen)
    [(0, 'done'), (0, 'epoch'), (0, 'start'), (1, 'done'), (1, 'epoch'), (1, 'start')]
"""

from __future__ import annotations

import os
import pickle
import traceback
from itertools import islice
from typing import Any, Callable, Iterable, Optional

from tunelab.errors import ConfigError, TunelabError
from tunelab.execute.base import Decision, Event, TrialSpec, interrupted_write
from tunelab.execute.trial import execute_trial, final_event

__all__ = ["PopulationExecutor", "DEFAULT_SIZE"]

DEFAULT_SIZE = 32


class PopulationExecutor:
    """Trains up to ``size`` trials together (see the module docstring); with ``workers`` > 1 each
    bucket is split among that many long-lived worker processes, one population per process, each
    on its share of the free cores (as the process executor splits them)."""

    def __init__(self, size: int = DEFAULT_SIZE, workers: int = 1, pbt=None) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"--population-size={size!r} is out of range; allowed: a whole number >= 1")
        self.size, self.workers, self.pbt = size, workers, pbt  # pbt: a PBTConfig (population-based training)
        self._running: list[int] = []
        self._pool: list = []  # (process, connection) of each worker, started on first use

    def run(self, trials: Iterable[TrialSpec], on_event: Callable[[Event], Decision]) -> None:
        it = iter(trials)
        while True:
            specs = list(islice(it, self.size))
            if not specs:
                return
            stack, solo = self._split(specs)
            from tunelab.population import group

            for bucket in group([cfg for _, cfg in stack]):
                pairs = [stack[i] for i in bucket]
                if self.workers > 1 and len(pairs) > 1:
                    self._in_workers(pairs, on_event)
                else:
                    self._population(pairs, on_event)
            for spec in solo:
                self._one(spec, on_event)

    @staticmethod
    def _split(specs: list[TrialSpec]) -> tuple[list, list[TrialSpec]]:
        """(spec, RunConfig) pairs the population can train, and the specs that run one by one."""
        from tunelab.config import from_dict
        from tunelab.population import stackable

        stack, solo = [], []
        for spec in specs:
            cfg = None
            if spec.fn is None and spec.run_dir is None and spec.log_dir is None:
                try:
                    cfg = from_dict(spec.config)
                except ConfigError:
                    cfg = None  # execute_trial reports it as the failure it is
            if cfg is not None and stackable(cfg):
                stack.append((spec, cfg))
            else:
                solo.append(spec)
        # specs that read the test set (compare runs) and those that do not never share a population
        tests = {s.test for s, _ in stack}
        if len(tests) > 1:
            solo += [s for s, _ in stack if s.test]
            stack = [(s, c) for s, c in stack if not s.test]
        return stack, solo

    def _one(self, spec: TrialSpec, on_event: Callable[[Event], Decision]) -> None:
        """A trial the population cannot stack: the inline executor's way."""
        self._running = [spec.number]
        on_event(Event(spec.number, "start", metrics={"pid": os.getpid()}))
        final = execute_trial(spec, lambda step, value, metrics: on_event(
            Event(spec.number, "epoch", step, value, metrics)) == "prune")
        if final.metrics.get("status") == "interrupted":
            raise KeyboardInterrupt(f"trial {spec.number} interrupted")
        on_event(final)
        self._running = []

    def _population(self, pairs: list, on_event: Callable[[Event], Decision]) -> None:
        from tunelab.population import train_population

        specs = [s for s, _ in pairs]
        self._running = [s.number for s in specs]
        pruned: dict[int, int] = {}
        interrupted = []
        for spec in specs:
            on_event(Event(spec.number, "start", metrics={"pid": os.getpid(), "population": len(specs)}))

        def on_epoch(i: int, ev) -> Optional[str]:
            spec = specs[i]
            if on_event(Event(spec.number, "epoch", ev.epoch, ev.metrics[spec.objective], ev.metrics)) == "prune":
                pruned[i] = ev.epoch
                return "stop"
            return None

        def on_member_done(i: int, result) -> None:
            for e in result.events:  # population-based training names members by position: say the trial
                if e.get("kind") == "pbt" and "from_trial" not in e:
                    e["from_trial"] = specs[e["from"]].number
            if result.status == "interrupted":
                interrupted.append(specs[i].number)
                return
            try:
                on_event(final_event(specs[i], result, pruned.get(i, 0)))
            except KeyboardInterrupt:  # Ctrl-C in the driver's write of this result: the study stops
                interrupted.append(specs[i].number)  # (even when this was the population's last member)
                raise
            self._running.remove(specs[i].number)

        try:
            train_population([c for _, c in pairs], on_epoch=on_epoch, test=specs[0].test,
                             on_member_done=on_member_done, pbt=self.pbt)
        except Exception as e:  # noqa: BLE001 - the bucket cannot go on: each trial in flight fails
            if interrupted_write(e):  # Ctrl-C inside the driver's storage write: stop the study
                raise KeyboardInterrupt("interrupted during a storage write") from e
            error = f"{type(e).__name__}: {e}"
            if not isinstance(e, TunelabError):
                error += "\n" + traceback.format_exc(limit=-3)
            for number in list(self._running):
                on_event(Event(number, "failed", error=error))
            self._running = []
            return
        if interrupted:
            raise KeyboardInterrupt(f"trials {interrupted} interrupted")

    # ------------------------------------------------------------------ worker processes
    def _in_workers(self, pairs: list, on_event: Callable[[Event], Decision]) -> None:
        """One bucket split round-robin among the workers; their events reach ``on_event`` here
        (the driver stays the only writer) and epoch events wait for the driver's decision."""
        from multiprocessing.connection import wait

        groups = [pairs[i::self.workers] for i in range(self.workers)]
        groups = [g for g in groups if g]
        self._start(len(groups))
        flight: dict[Any, set[int]] = {}
        for (proc, conn), g in zip(self._pool, groups):
            conn.send(pickle.dumps([spec for spec, _ in g]))
            flight[conn] = {spec.number for spec, _ in g}
        self._running = sorted(n for numbers in flight.values() for n in numbers)
        while flight:
            for conn in wait(list(flight)):
                try:
                    kind, ev = conn.recv()
                except (EOFError, OSError):  # the worker died: its members fail, the others go on
                    for number in sorted(flight.pop(conn)):
                        on_event(Event(number, "failed", error="the population's worker process died"))
                        self._running.remove(number)
                    self._pool = [(p, c) for p, c in self._pool if c is not conn]
                    continue
                if kind == "end":
                    flight.pop(conn)
                    continue
                decision = on_event(ev)
                if ev.kind == "epoch":
                    conn.send(decision == "prune")
                elif ev.kind in ("done", "pruned", "failed"):
                    flight[conn].discard(ev.number)
                    self._running.remove(ev.number)

    def _start(self, n: int) -> None:
        """At least ``n`` live workers, each on its share of the free cores."""
        import multiprocessing as mp

        from tunelab.trainer.threads import auto_threads, machine_load, usable_cores

        self._pool = [(p, c) for p, c in self._pool if p.is_alive()]
        threads = auto_threads(usable_cores(), machine_load(), self.workers)
        ctx = mp.get_context("spawn")
        while len(self._pool) < n:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child, threads), daemon=True,
                               name=f"tunelab-population-{len(self._pool)}")
            proc.start()
            child.close()
            self._pool.append((proc, parent))

    def running(self) -> list[int]:
        """Numbers of the trials in flight (those cut short by an interrupt, if any)."""
        return list(self._running)

    def close(self) -> None:
        """Stop the worker processes (asked first, then terminated)."""
        for proc, conn in self._pool:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
        for proc, _ in self._pool:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        self._pool = []

    def __enter__(self) -> "PopulationExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _worker_main(conn, threads: int) -> None:
    """A population worker: receive pickled spec lists, train them as one population, send every
    event back and, for epoch events, wait for the driver's decision. Ctrl-C is the driver's."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from tunelab.config import from_dict
    from tunelab.trainer.threads import set_threads

    set_threads(threads, as_default=True)  # what training.threads null means in this process

    def remote(ev: Event) -> Decision:
        conn.send(("event", ev))
        if ev.kind == "epoch":
            return "prune" if conn.recv() else "continue"
        return None

    try:
        while (payload := conn.recv()) is not None:
            specs = pickle.loads(payload)
            PopulationExecutor(len(specs))._population([(s, from_dict(s.config)) for s in specs], remote)
            conn.send(("end", None))
    except (EOFError, OSError, KeyboardInterrupt):  # the driver is gone, or stopped the study
        pass
    os._exit(0)
