"""The default thread policy: ``training.threads: null`` trains on the cores other work leaves
free (``auto_threads``), an explicit integer wins, and process workers get their share.

The policy is tested with scripted (cores, load) numbers; the readers with scripted clocks and
files; runs with the readers replaced (idle: load 0, busy: load 1.7 on 2 cores), observing the
thread count *during* training with a forward hook (as tests/trainer/test_prepare.py does).
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

import tunelab
from tunelab import timing
from tunelab.trainer import threads as prep
from tunelab.trainer.threads import CpuReading, auto_threads, decide_threads, set_threads

from .test_prepare import thread_probe

RUN = {"model": {"hidden": [16]}, "training": {"epochs": 1}}


@pytest.fixture
def machine(monkeypatch):
    """Script the machine: ``machine(cores, load)`` makes the readers answer these numbers;
    the process's thread count and worker share are restored afterwards."""
    saved = torch.get_num_threads()
    monkeypatch.setattr(prep, "_PROCESS_THREADS", None)

    def script(cores: int, load: float) -> None:
        monkeypatch.setattr(prep, "usable_cores", lambda: cores)
        monkeypatch.setattr(prep, "machine_load", lambda: load)

    yield script
    torch.set_num_threads(saved)


def _start_with(n: int) -> None:
    torch.set_num_threads(n)
    assert torch.get_num_threads() == n


# ---------------------------------------------------------------------------- the pure policy
@pytest.mark.parametrize("cores,load,workers,expected", [
    (2, 0.0, 1, 2),    # idle: every core
    (2, 0.49, 1, 2),   # a core a third busy is still free
    (2, 0.5, 1, 1),    # half busy counts as busy (round half up)
    (2, 1.4, 1, 1),
    (2, 3.9, 1, 1),    # oversubscribed already: never below 1
    (1, 0.0, 1, 1),
    (16, 0.0, 1, 16),
    (16, 3.6, 1, 12),
    (16, 40.0, 1, 1),
    (16, 0.0, 3, 5),   # idle, 3 workers: cores // workers
    (16, 6.2, 4, 2),   # 10 free cores among 4 workers
    (2, 0.0, 2, 1),
    (2, 1.0, 2, 1),    # one free core, two workers: still 1 each
    (4, -0.3, 1, 4),   # a negative reading (own part over-subtracted) is an idle machine
])
def test_auto_threads_gives_the_free_cores_split_among_workers(cores, load, workers, expected):
    assert auto_threads(cores, load, workers) == expected


def test_auto_threads_rejects_no_cores_or_no_workers():
    with pytest.raises(ValueError, match="cores=0"):
        auto_threads(0, 0.0)
    with pytest.raises(ValueError, match="workers=0"):
        auto_threads(2, 0.0, workers=0)


# ---------------------------------------------------------------------------- set_threads
def test_set_threads_none_applies_the_policy_to_what_the_readers_say(machine):
    machine(2, 0.0)
    _start_with(1)
    set_threads(None)
    assert torch.get_num_threads() == 2
    machine(2, 1.7)
    set_threads(None)
    assert torch.get_num_threads() == 1


def test_an_explicit_count_is_set_without_reading_the_machine(machine, monkeypatch):
    def unread():
        raise AssertionError("the load was read for an explicit count")

    monkeypatch.setattr(prep, "machine_load", unread)
    _start_with(1)
    set_threads(2)
    assert torch.get_num_threads() == 2


def test_a_worker_share_is_what_none_means_in_that_process(machine):
    machine(2, 1.7)  # busy: auto would say 1
    set_threads(2, as_default=True)
    _start_with(1)
    set_threads(None)
    assert torch.get_num_threads() == 2


# ---------------------------------------------------------------------------- runs
@pytest.mark.parametrize("load,start,expected", [(0.0, 1, 2), (1.7, 2, 1)], ids=["idle", "busy"])
def test_a_run_with_threads_null_trains_on_the_auto_count(machine, load, start, expected):
    """The run starts from the other count, so a path that kept the current count fails."""
    machine(2, load)
    _start_with(start)
    with thread_probe() as seen:
        result = tunelab.train(RUN, save=False)
    assert result.status == "completed"
    assert seen and set(seen) == {expected}


@pytest.mark.parametrize("load,threads", [(0.0, 1), (1.7, 2)], ids=["idle", "busy"])
def test_an_explicit_training_threads_wins_over_the_policy(machine, load, threads):
    machine(2, load)
    _start_with(3 - threads)
    cfg = {**RUN, "training": {**RUN["training"], "threads": threads}}
    with thread_probe() as seen:
        tunelab.train(cfg, save=False)
    assert seen and set(seen) == {threads}


def test_the_process_executor_share_is_capped_by_the_free_cores(machine):
    from tunelab.execute import ProcessExecutor

    machine(8, 0.0)
    assert ProcessExecutor(2).threads == 4  # idle: cores // workers
    machine(8, 3.8)
    assert ProcessExecutor(2).threads == 2  # 4 free cores between 2 workers
    machine(8, 7.6)
    assert ProcessExecutor(3).threads == 1
    assert ProcessExecutor(2, threads_per_worker=3).threads == 3  # an explicit share wins


# ---------------------------------------------------------------------------- the readers
class Clock(SimpleNamespace):
    """A scripted ``time`` module: monotonic and process_time advance only when told."""

    def __init__(self):
        super().__init__(now=0.0, cpu=0.0, slept=[])

    def monotonic(self):
        return self.now

    def process_time(self):
        return self.cpu

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_busy_elsewhere_counts_other_processes_not_this_one(monkeypatch):
    clock = Clock()
    busy = iter([1000.0, 1000.15])  # all cores: 0.15 CPU-s busy over the window...
    monkeypatch.setattr(prep, "time", clock)
    monkeypatch.setattr(prep, "_busy_cpu_seconds", lambda: next(busy))

    def sleep(seconds):
        clock.now += seconds
        clock.cpu += 0.05  # ...of which 0.05 was this process
    clock.sleep = sleep
    assert prep._busy_elsewhere(0.1) == pytest.approx(1.0)


def test_own_load_folds_this_process_in_like_the_kernel(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(prep, "time", clock)
    monkeypatch.setattr(prep, "_OWN", {"wall": 0.0, "cpu": 0.0, "avg": 0.0})
    clock.now, clock.cpu = 60.0, 120.0  # two busy threads for a minute
    assert prep._own_load() == pytest.approx(2 * (1 - math.exp(-1)))
    clock.now = 120.0  # then a minute idle: the part decays
    assert prep._own_load() == pytest.approx(2 * (1 - math.exp(-1)) * math.exp(-1))


def test_machine_load_is_the_reading_of_now_not_the_load_average(monkeypatch):
    """The load average still counts a command that ended a minute ago (0.74-0.81 on a quiet 2-core
    machine after three 2-epoch runs): it is read only where no instantaneous reading exists."""
    clock = Clock()
    monkeypatch.setattr(prep, "time", clock)
    monkeypatch.setattr(prep, "_LAST_LOAD", [])
    monkeypatch.setattr(prep.os, "getloadavg", lambda: (0.81, 0.5, 0.2))
    monkeypatch.setattr(prep, "_own_load", lambda: 0.0)
    monkeypatch.setattr(prep, "_busy_now", lambda ours=(): 0.02)
    assert prep.machine_load() == pytest.approx(0.02)  # quiet now: the finished command is not counted
    monkeypatch.setattr(prep, "_busy_now", lambda ours=(): 1.6)
    clock.now += 1.0
    assert prep.machine_load() == pytest.approx(0.02)  # within 2 s: the same reading
    clock.now += 2.0
    assert prep.machine_load() == pytest.approx(1.6)  # a load that began a moment ago
    monkeypatch.setattr(prep, "_busy_now", lambda ours=(): None)  # no /proc/stat (macOS)
    clock.now += 2.0
    assert prep.machine_load() == pytest.approx(0.81)  # then the load average, less our part
    monkeypatch.delattr(prep.os, "getloadavg")  # Windows: nothing at all
    clock.now += 2.0
    assert prep.machine_load() == 0.0


# ---------------------------------------------------------------------------- scripted readings
@pytest.mark.parametrize("reading,expected", [
    # idle after a finished command: the average remembers it, the reading of now does not
    (CpuReading(cores=2, quota=None, torch_default=2, busy_elsewhere=0.02, load_average=0.81), 2),
    (CpuReading(2, None, 2, busy_elsewhere=0.0, load_average=1.9), 2),
    (CpuReading(2, None, 2, busy_elsewhere=1.0, load_average=1.0), 1),     # one busy core
    (CpuReading(2, None, 2, busy_elsewhere=0.55, load_average=0.1), 1),    # one that began a moment ago
    (CpuReading(2, None, 2, busy_elsewhere=2.0, load_average=2.0), 1),     # two busy cores: never 0
    (CpuReading(16, None, 16, busy_elsewhere=2.0, load_average=0.3), 14),  # two busy of 16
    (CpuReading(16, 4.0, 16, busy_elsewhere=0.0, load_average=0.0), 4),    # a cgroup quota of 4 CPUs
    (CpuReading(16, 2.5, 16, busy_elsewhere=0.0, load_average=0.0), 3),    # a fractional quota: its ceiling
    (CpuReading(16, 4.0, 16, busy_elsewhere=1.0, load_average=0.0), 3),    # the quota, less the busy core
    (CpuReading(16, None, 3, busy_elsewhere=0.0, load_average=0.0), 3),    # OMP_NUM_THREADS=3
    (CpuReading(2, None, 2, busy_elsewhere=None, load_average=0.81), 1),   # no /proc/stat: the average
    (CpuReading(2, None, 2, busy_elsewhere=None, load_average=None), 2),   # nothing known: every core
], ids=["quiet-after-a-command", "quiet-average-high", "one-busy", "one-just-started", "two-busy",
        "two-busy-of-16", "quota-4", "quota-2.5", "quota-less-busy", "omp-3", "no-proc-stat", "nothing-known"])
def test_the_policy_decides_from_scripted_readings(reading, expected):
    assert decide_threads(reading) == expected


def test_workers_of_one_study_share_what_the_reading_leaves_free():
    reading = CpuReading(8, None, 8, busy_elsewhere=2.0, load_average=5.0)
    assert [decide_threads(reading, w) for w in (1, 2, 3, 6, 7)] == [6, 3, 2, 1, 1]


def test_the_first_reading_uses_the_window_since_tunelab_was_imported(monkeypatch):
    """No sleep: the seconds of torch's import are the window; this process's own CPU is not counted."""
    clock = Clock()
    monkeypatch.setattr(prep, "time", clock)
    clock.now, clock.cpu = 0.5, 0.4  # 0.5 s after the mark; we used 0.4 CPU-s importing
    monkeypatch.setattr(timing, "CPU_MARK", [0.0, 100.0, 0.0])
    monkeypatch.setattr(prep, "_busy_cpu_seconds", lambda: 100.9)  # 0.9 CPU-s busy on all cores
    assert prep._busy_now() == pytest.approx(1.0)  # (0.9 - 0.4) / 0.5: one core busy elsewhere
    assert clock.slept == [] and timing.CPU_MARK == []  # used once
    busy = iter([100.9, 100.9])
    monkeypatch.setattr(prep, "_busy_cpu_seconds", lambda: next(busy))
    assert prep._busy_now() == 0.0 and clock.slept == [prep._LOAD_WINDOW_S]  # then a sample of its own


@pytest.mark.parametrize("age", [0.01, 5.0], ids=["too-young", "too-old"])
def test_a_mark_too_young_or_too_old_is_not_a_window_of_now(monkeypatch, age):
    clock = Clock()
    monkeypatch.setattr(prep, "time", clock)
    clock.now = age
    monkeypatch.setattr(timing, "CPU_MARK", [0.0, 0.0, 0.0])
    counters = iter([50.0, 50.0])
    monkeypatch.setattr(prep, "_busy_cpu_seconds", lambda: next(counters))
    assert prep._busy_now() == 0.0 and clock.slept == [prep._LOAD_WINDOW_S]


def _spinners(n: int) -> list:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def _fresh_process_threads() -> tuple[int, int]:
    """The thread count a new process's run would take (training.threads null), as tunelab train decides."""
    code = ("import tunelab.trainer.threads as t; t.set_threads(None); import torch; "
            "print(torch.get_num_threads(), t.usable_cores())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    threads, cores = map(int, out.split())
    return threads, cores


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat is Linux's")
@pytest.mark.parametrize("busy", [1, 2])
def test_a_new_process_beside_busy_processes_takes_fewer_threads(busy):
    """Real competing processes: one or two spinning interpreters; a fresh process reading the machine
    leaves their cores to them (on a 2-core machine: 1 thread)."""
    children = _spinners(busy)
    try:
        time.sleep(0.3)  # the interpreters start and spin
        threads, cores = _fresh_process_threads()
    finally:
        for c in children:
            c.kill()
            c.wait()
    assert threads == max(1, cores - busy)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat is Linux's")
def test_work_that_has_ended_is_not_counted():
    """A competing process that ran and ended just before (as a previous command): the next reading
    sees the cores free again (the load average would still count it): no more busy than before
    they ran (other work on the machine, such as a benchmark beside the suite, stays counted)."""
    before = prep._busy_elsewhere(0.3)
    for c in _spinners(2):
        time.sleep(0.6)
        c.kill()
        c.wait()
    time.sleep(0.05)
    seen = prep._busy_elsewhere(0.3)
    assert before is not None and seen is not None and seen < before + 0.5


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat is Linux's")
def test_busy_elsewhere_sees_a_competing_process():
    """A live reading: a child spinning for the whole window is someone else's load."""
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # the interpreter starts and spins
        seen = prep._busy_elsewhere(0.5)
    finally:
        child.kill()
        child.wait()
    assert seen is not None and seen >= 0.3  # at least a share of a core, whatever else runs


@pytest.mark.parametrize("files,expected", [
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4.0),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_a_container_quota_is_read_from_cgroup_files(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert prep._cgroup_cpus(str(tmp_path)) == expected


def test_usable_cores_are_capped_by_a_quota_and_by_torch_default(monkeypatch):
    monkeypatch.setattr(prep.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(prep, "_TORCH_DEFAULT", 8)
    monkeypatch.setattr(prep, "_cgroup_cpus", lambda: None)
    assert prep.usable_cores() == 8
    monkeypatch.setattr(prep, "_cgroup_cpus", lambda: 2.5)
    assert prep.usable_cores() == 3
    monkeypatch.setattr(prep, "_TORCH_DEFAULT", 2)  # OMP_NUM_THREADS=2, or physical cores
    assert prep.usable_cores() == 2
