"""The population executor: up to K trials at a time trained as one stacked computation.

It pulls up to ``size`` specs, sorts the mlp and cnn trials into buckets of one structure
(``tunelab.population.group``: data, model shape, optimizer kind, batch size...) and trains each
bucket with ``train_population``; every member streams its epoch events to the driver like a trial
of the other executors, and a "prune" answer stops that member at once (the others go on). What the
population cannot stack runs one by one in this process, as the inline executor would: user-registered models,
user objectives, trials with a live folder (``--trial-folders``) or a TensorBoard log.

The first K specs are asked before any of them reports, as with K parallel workers. When members
leave the stack (finished, pruned, stopped early), the executor asks the driver for new trials and
they join at the next epoch boundary with their own seeds, weights, data order and schedules
(``train_population(refill=...)``), so the stack stays full until the study's budget is spent and a
sampler that learns from results (TPE, GP) proposes each new trial from every result so far. An asked
trial of another bucket waits (at most K of them) and trains in a later stack; the largest bucket
trains first. A stack whose evaluation period is not one pass over the data (``training.steps`` with
another ``eval_every``) drains without refill, and so does population-based training (its members are
fixed). With ``workers`` > 1 each bucket is split among that many long-lived worker processes, one
population per process (on a CPU, two processes use two cores better than one process with two
threads), each holding its share of the K slots and asking the driver for its refills through its pipe.

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
        self._waiting: list[TrialSpec] = []  # asked, not yet trained: another bucket's, for a later stack
        # summed over this executor's stacks: member_steps / slot_steps is the mean occupancy
        self.stats: dict = {"member_steps": 0, "slot_steps": 0, "member_steps_open": 0, "slot_steps_open": 0,
                            "refilled": 0}
        self._pool: list = []  # (process, connection) of each worker, started on first use

    def run(self, trials: Iterable[TrialSpec], on_event: Callable[[Event], Decision]) -> None:
        from tunelab.population import group

        it = iter(trials)
        self._waiting = []
        while True:
            specs, self._waiting = self._waiting, []
            specs += list(islice(it, max(0, self.size - len(specs))))
            if not specs:
                return
            stack, solo = self._split(specs)
            for spec in solo:
                self._one(spec, on_event)
            buckets = sorted(group([cfg for _, cfg in stack]), key=len, reverse=True)
            if not buckets:
                continue
            pairs = [stack[i] for i in buckets[0]]  # the largest bucket trains now; the others wait
            self._waiting = [stack[i][0] for b in buckets[1:] for i in b]
            if self.workers > 1 and len(pairs) > 1:
                self._in_workers(pairs, on_event, self._refiller(it, pairs) if self.pbt is None else None)
            else:
                self._population(pairs, on_event, self._refiller(it, pairs) if self.pbt is None else None)

    def _refiller(self, it, pairs: list) -> Callable[[int], list]:
        """``refill(free)`` for a stack of ``pairs``' bucket: the waiting specs that fit it first, then
        new ones asked from ``it`` (the driver asks its sampler then, with the results so far); an
        asked spec of another bucket waits for its own stack, at most ``size`` of them."""
        from tunelab.population import bucket_key

        key, test = bucket_key(pairs[0][1]), pairs[0][0].test
        known: dict[int, Optional[tuple]] = {}  # spec number -> (spec, config, bucket key) or None: parsed once

        def fits(spec: TrialSpec):
            if spec.number not in known:
                stack = self._split([spec])[0]
                known[spec.number] = (*stack[0], bucket_key(stack[0][1])) if stack else None
            found = known[spec.number]
            return found[:2] if found is not None and found[2] == key and spec.test == test else None

        def refill(free: int) -> list:
            out, still = [], []
            for spec in self._waiting:
                pair = fits(spec) if len(out) < free else None
                if pair is not None:
                    out.append(pair)
                else:
                    still.append(spec)
            self._waiting = still
            while len(out) < free and len(self._waiting) < self.size:
                spec = next(it, None)
                if spec is None:
                    break
                pair = fits(spec)
                if pair is None:
                    self._waiting.append(spec)
                else:
                    out.append(pair)
            return out

        return refill

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

    def _population(self, pairs: list, on_event: Callable[[Event], Decision],
                    refill: Optional[Callable[[int], list]] = None) -> None:
        """Train ``pairs`` as one stack; ``refill(free)`` (see ``_refiller``) gives (spec, config) pairs
        that take the slots of members that left, at the next epoch boundary."""
        from tunelab.population import train_population

        if refill is not None and len(pairs) < self.size:  # fill the stack before it starts: the first
            pairs = pairs + refill(self.size - len(pairs))  # batch of specs held other buckets' too
        specs = [s for s, _ in pairs]
        self._running = [s.number for s in specs]
        pruned: dict[int, int] = {}
        interrupted = []
        for spec in specs:
            on_event(Event(spec.number, "start", metrics={"pid": os.getpid(), "population": len(specs)}))

        def join(free: int) -> list:
            new = refill(free)
            for spec, _ in new:
                specs.append(spec)
                self._running.append(spec.number)
                on_event(Event(spec.number, "start", metrics={"pid": os.getpid(), "population": len(pairs),
                                                              "refilled": True}))
            return [cfg for _, cfg in new]

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
                             on_member_done=on_member_done, pbt=self.pbt,
                             refill=join if refill is not None else None, capacity=self.size, stats=self.stats)
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
    def _in_workers(self, pairs: list, on_event: Callable[[Event], Decision],
                    refill: Optional[Callable[[int], list]] = None) -> None:
        """One bucket split round-robin among the workers; their events reach ``on_event`` here
        (the driver stays the only writer) and epoch events wait for the driver's decision. A worker's
        stack asks for refills through the pipe (``("refill", free)``); the specs it gets (``refill``:
        see ``_refiller``) are its members from then on."""
        from multiprocessing.connection import wait

        groups = [pairs[i::self.workers] for i in range(self.workers)]
        groups = [g for g in groups if g]
        self._start(len(groups))
        flight: dict[Any, set[int]] = {}
        for (proc, conn), g in zip(self._pool, groups):
            conn.send(pickle.dumps(([spec for spec, _ in g], refill is not None, -(-self.size // len(groups)))))
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
                    if isinstance(ev, dict):  # the worker's stack statistics
                        for k, v in ev.items():
                            self.stats[k] = self.stats.get(k, 0) + v
                    continue
                if kind == "refill":
                    given = [spec for spec, _ in refill(ev)] if refill is not None else []
                    flight[conn].update(spec.number for spec in given)
                    self._running += [spec.number for spec in given]
                    conn.send(pickle.dumps(given))
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

    @property
    def timing(self) -> dict:
        """What the study records of this executor (Progress.executor): members trained and slots held,
        summed over steps, the members that refilled a slot, and the mean occupancy (members / slots),
        overall and while refills kept coming (``occupancy_open``: before the budget ran out)."""
        slots, open_slots = self.stats.get("slot_steps", 0), self.stats.get("slot_steps_open", 0)
        return {**self.stats, "occupancy": self.stats.get("member_steps", 0) / slots if slots else None,
                "occupancy_open": self.stats.get("member_steps_open", 0) / open_slots if open_slots else None}

    def running(self) -> list[int]:
        """Numbers of the trials in flight (those cut short by an interrupt, if any), the asked ones
        waiting for their stack included."""
        return list(self._running) + [s.number for s in self._waiting]

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

    def refill(free: int) -> list:  # the driver asks its sampler and sends the specs that join
        conn.send(("refill", free))
        return [(s, from_dict(s.config)) for s in pickle.loads(conn.recv())]

    try:
        while (payload := conn.recv()) is not None:
            specs, refills, capacity = pickle.loads(payload)
            executor = PopulationExecutor(max(capacity, len(specs)))
            executor._population([(s, from_dict(s.config)) for s in specs], remote, refill if refills else None)
            conn.send(("end", executor.stats))
    except (EOFError, OSError, KeyboardInterrupt):  # the driver is gone, or stopped the study
        pass
    os._exit(0)
