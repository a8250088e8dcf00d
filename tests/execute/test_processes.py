"""ProcessExecutor: parallel, lazy, ordered, prunable, fault tolerant, and leaves no orphans."""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest

from tests.execute import objectives
from tunelab.errors import ConfigError, TunelabError
from tunelab.execute import (EXECUTORS, Event, InlineExecutor, ProcessExecutor, TrialSpec,
                             make_executor)
from tunelab.execute import processes
from tunelab.execute.processes import available_cores

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is optional
    psutil = None


class Recorder:
    """on_event that records events, tracks trials in flight and prunes on request."""

    def __init__(self, prune_at: dict[int, int] | None = None, raise_on_epoch: BaseException | None = None):
        self.events: list[Event] = []
        self.live: set[int] = set()
        self.max_live = 0
        self.prune_at = prune_at or {}
        self.raise_on_epoch = raise_on_epoch

    def __call__(self, ev: Event):
        self.events.append(ev)
        if ev.kind == "start":
            self.live.add(ev.number)
            self.max_live = max(self.max_live, len(self.live))
        elif ev.kind in ("done", "pruned", "failed"):
            self.live.discard(ev.number)
        elif self.raise_on_epoch is not None:
            raise self.raise_on_epoch
        elif self.prune_at.get(ev.number) == ev.step:
            return "prune"
        return "continue"

    def of(self, number: int) -> list[Event]:
        return [e for e in self.events if e.number == number]

    def kinds(self, number: int) -> list[str]:
        return [e.kind for e in self.of(number)]

    def final(self, number: int) -> Event:
        return self.of(number)[-1]


def assert_no_workers(pids=()) -> None:
    """No child process of ours (and none of ``pids``) is alive."""
    if psutil is not None:
        assert psutil.Process().children(recursive=True) == []
        assert not [p for p in pids if psutil.pid_exists(p)]
    assert multiprocessing.active_children() == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def spec(n: int, fn=objectives.quadratic, **config) -> TrialSpec:
    return TrialSpec(n, config, fn=fn)


class TestSharedPool:
    """Tests that share two started workers (first, so later tests see no children at all)."""

    @pytest.fixture(scope="class")
    def pool(self):
        # 2 threads each: not the default share on a 2-core machine, so the test below can tell
        with ProcessExecutor(2, threads_per_worker=2) as ex:
            yield ex
        assert_no_workers()

    def test_started_workers_have_distinct_pids_and_the_threads_asked_for(self, pool):
        pids = pool.pids()
        assert len(set(pids)) == 2 and os.getpid() not in pids
        rec = Recorder()
        pool.run(iter([spec(n, objectives.whoami, sleep=0.2) for n in range(2)]), rec)
        assert [rec.final(n).value for n in range(2)] == [2.0, 2.0]
        assert {rec.of(n)[1].metrics["pid"] for n in range(2)} == set(pids)  # both used
        assert pool.pids() == pids  # started explicitly: run() leaves them running

    def test_pruning_across_processes(self, pool):
        rec = Recorder(prune_at={0: 2})
        pool.run(iter([spec(0, epochs=5, sleep=0.02), spec(1, epochs=4, sleep=0.02)]), rec)
        assert rec.kinds(0) == ["start", "epoch", "epoch", "pruned"]
        assert rec.final(0).step == 2
        assert rec.kinds(1) == ["start"] + ["epoch"] * 4 + ["done"]

    def test_real_training_spec(self, pool):
        rec = Recorder()
        cfg = {"training": {"epochs": 2}, "model": {"hidden": [16]}}
        pool.run(iter([TrialSpec(n, cfg, seed=n) for n in range(3)]), rec)
        for n in range(3):
            assert rec.kinds(n) == ["start", "epoch", "epoch", "done"]
            assert 0.0 < rec.final(n).value <= 1.0
            assert len(rec.final(n).metrics["history"]) == 2
        assert rec.final(0).value == rec.final(1).value  # same config, same seed, same result

    def test_raising_nan_and_unpicklable_objectives_fail(self, pool):
        rec = Recorder()
        pool.run(iter([spec(0, objectives.raises, x=5), spec(1, objectives.nan),
                       spec(2, lambda config, reporter: 1.0), spec(3, epochs=1)]), rec)
        assert rec.kinds(0) == ["start", "epoch", "failed"]
        assert rec.final(0).error.startswith("ValueError: bad x=5")
        assert rec.kinds(1) == ["start", "failed"] and "nan" in rec.final(1).error
        assert rec.kinds(2) == ["failed"] and "module-level function" in rec.final(2).error
        assert rec.kinds(3) == ["start", "epoch", "done"]

    def test_killed_worker_fails_its_trial_and_the_study_goes_on(self, pool):
        rec = Recorder()
        specs = [spec(n, epochs=2, sleep=0.05) for n in range(5)]
        specs.insert(1, spec(9, objectives.suicide, die=True))
        specs.insert(3, spec(8, objectives.exits, code=3))
        before = set(pool.pids())
        pool.run(iter(specs), rec)
        assert rec.kinds(9) == ["start", "epoch", "failed"]
        dead = rec.of(9)[0].metrics["pid"]
        assert rec.final(9).error == f"worker process {dead} died (exit code {-signal.SIGKILL}) while running trial 9"
        assert rec.kinds(8) == ["start", "epoch", "failed"]
        assert "died (exit code 3) while running trial 8" in rec.final(8).error
        for n in range(5):
            assert rec.kinds(n) == ["start", "epoch", "epoch", "done"]
        after = set(pool.pids())
        assert len(after) == 2 and dead not in after and after != before  # replaced

    def test_worker_killed_while_idle_is_replaced(self, pool):
        victim = pool._slots[0].process
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(10)
        rec = Recorder()
        pool.run(iter([spec(n, epochs=1) for n in range(4)]), rec)
        assert all(rec.kinds(n) == ["start", "epoch", "done"] for n in range(4))
        assert victim.pid not in pool.pids() and len(pool.pids()) == 2

    def test_close_stops_started_workers(self, pool):  # last in the class: it ends the pool
        pids = pool.pids()
        pool.close()
        pool.close()  # idempotent
        assert pool.pids() == []
        assert_no_workers(pids)


# ------------------------------------------------------------------ scheduling
def test_two_in_flight_lazy_pull_and_ordered_events():
    rec = Recorder()
    live_at_pull: list[int] = []

    def specs():
        for n in range(6):
            live_at_pull.append(len(rec.live))
            yield spec(n, x=float(n), epochs=2, sleep=0.15)

    ex = ProcessExecutor(2)
    ex.run(specs(), rec)
    assert max(live_at_pull) < 2  # never asked for a spec while both workers were busy
    assert rec.max_live == 2
    first_done = next(i for i, e in enumerate(rec.events) if e.kind == "done")
    second_start = [i for i, e in enumerate(rec.events) if e.kind == "start"][1]
    assert second_start < first_done  # two trials overlapped
    for n in range(6):
        assert rec.kinds(n) == ["start", "epoch", "epoch", "done"]
        assert [e.step for e in rec.of(n)[1:3]] == [1, 2]
        assert rec.final(n).value == pytest.approx((n - 2.0) ** 2)
        assert rec.of(n)[1].metrics["pid"] == rec.of(n)[0].metrics["pid"]  # ran where it said
    pids = {e.metrics["pid"] for e in rec.events if e.kind == "start"}
    assert len(pids) == 2 and os.getpid() not in pids  # two long-lived workers, reused
    share = max(1, available_cores() // 2)  # processes split the cores (a trial's first epoch:
    # later ones may get an idle worker's cores once no trial is left to start)
    assert {e.metrics["threads"] for e in rec.events if e.kind == "epoch" and e.step == 1} == {share}
    assert ex.running() == []
    assert_no_workers(pids)  # run() stops the workers it started


@pytest.mark.parametrize("fixed", [False, True])
def test_once_no_trial_is_left_the_running_trial_gets_the_idle_workers_threads(fixed):
    rec = Recorder()
    config = {"training": {"threads": 1}} if fixed else {}
    ex = ProcessExecutor(2, threads_per_worker=1)  # a budget of 2 threads
    ex.run(iter([spec(0, epochs=8, sleep=0.15, **config), spec(1, epochs=1, sleep=0.01, **config)]), rec)
    threads = [e.metrics["threads"] for e in rec.of(0) if e.kind == "epoch"]
    assert rec.final(0).kind == rec.final(1).kind == "done"
    assert threads[0] == 1  # two trials running: one thread each
    # trial 1 ended and no trial was left: trial 0 trained on with both threads, unless its config
    # fixes training.threads
    assert threads[-1] == (1 if fixed else 2), threads


# ------------------------------------------------------------------ failures
def test_workers_that_cannot_start_raise_after_a_few_tries(monkeypatch):
    monkeypatch.setattr(processes, "_MAX_STARTUP_DEATHS", 1)  # one spawn is enough to show it
    ex = ProcessExecutor(1)
    ex.threads = -1  # torch.set_num_threads(-1) raises while the worker starts
    rec = Recorder()
    with pytest.raises(TunelabError, match="die while starting"):
        ex.run(iter([spec(n) for n in range(10)]), rec)
    failed = [e for e in rec.events if e.kind == "failed"]
    started = {e.number for e in rec.events if e.kind == "start"}
    assert len(failed) == 1 and all("died (exit code 1)" in e.error for e in failed)
    assert started == {e.number for e in failed} | set(ex.running())  # the rest were cut short
    assert_no_workers()


# ------------------------------------------------------------------ interrupts and cleanup
def test_keyboard_interrupt_terminates_workers_and_names_running_trials():
    rec = Recorder(raise_on_epoch=KeyboardInterrupt())
    ex = ProcessExecutor(2)
    specs = iter([spec(n, epochs=3, sleep=0.3) for n in range(4)])
    with pytest.raises(KeyboardInterrupt):
        ex.run(specs, rec)
    assert ex.running() == [0, 1]
    assert next(specs).number == 2  # nothing more was pulled
    assert_no_workers([e.metrics["pid"] for e in rec.events if e.kind == "start"])


def test_error_inside_with_block_terminates_mid_trial_workers():
    rec = Recorder(raise_on_epoch=RuntimeError("driver bug"))
    with pytest.raises(RuntimeError, match="driver bug"):
        with ProcessExecutor(1) as ex:
            pids = ex.pids()
            ex.run(iter([spec(n, epochs=50, sleep=0.2) for n in range(2)]), rec)
    assert len(pids) == 1 and ex.running() == [0]
    assert_no_workers(pids)


# ------------------------------------------------------------------ registry
def test_make_executor_and_registry():
    assert isinstance(make_executor(1), InlineExecutor)
    ex = make_executor(3)
    assert isinstance(ex, ProcessExecutor) and ex.workers == 3 and ex.pids() == []
    assert EXECUTORS.names() == ["inline", "population", "processes", "ray"]
    assert isinstance(EXECUTORS.get("processes")(workers=2), ProcessExecutor)
    with pytest.raises(ConfigError, match="--workers=0"):
        make_executor(0)
    with pytest.raises(ConfigError, match="needs --executor processes"):
        EXECUTORS.get("inline")(workers=2)
    with pytest.raises(ConfigError, match=r"choose one of \['inline', 'population', 'processes', 'ray'\]"):
        EXECUTORS.get("threads")
    with pytest.raises(ConfigError, match="start_method"):
        ProcessExecutor(2, start_method="teleport")


def test_a_stopped_worker_falls_silent_and_its_trial_fails_without_a_trial_timeout():
    from tests.search import objectives as search_objectives

    rec = Recorder()
    ex = ProcessExecutor(2, heartbeat_timeout=4.0)  # no trial_timeout: only the heartbeat can tell
    specs = [TrialSpec(0, {"x": 0.9, "epochs": 2}, fn=search_objectives.hangs_when_x_is_large),
             TrialSpec(1, {"x": 0.1, "epochs": 2, "sleep": 6.0}, fn=search_objectives.hangs_when_x_is_large)]
    ex.run(iter(specs), rec)
    assert rec.final(0).kind == "failed" and "stopped answering (no heartbeat for 4 s" in rec.final(0).error
    # 6 s between reports, longer than the 4 s limit: its worker's heartbeat keeps it alive
    assert rec.final(1).kind == "done"
    assert ex.running() == []
