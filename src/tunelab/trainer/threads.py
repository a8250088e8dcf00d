"""The thread policy: how many torch threads a run (or each worker of a study) trains on.

``training.threads: null`` means the cores that other processes leave free *now*. torch's default
(every core) makes a small model several times slower, and 10-60 times slower on a busy machine,
once another process competes for the cores (docs/benchmarks.md, "Threads on a shared CPU").

What "now" means matters: the 1-minute load average still counts a command that ended a minute ago
(three back-to-back ``tunelab train`` runs on a quiet 2-core machine each read 0.74-0.81 and picked
one thread). So the decision is taken from an instantaneous reading: the CPU time all cores spent
busy over a short window (Linux ``/proc/stat``), less what this process and its own workers used
in it. The window is free when the process is young: it runs from the moment ``tunelab`` was
imported (the seconds torch takes to import) to the decision, when that is 0.1-2 s; otherwise
0.1 s are sampled. The load
average is used only where ``/proc/stat`` is not there (macOS, Windows), less this process's own
part of it.

``decide_threads(reading)`` is the pure policy (tested with scripted readings); ``read_cpu()``
takes the reading.

Example:
    >>> decide_threads(CpuReading(cores=2, quota=None, torch_default=2, busy_elsewhere=0.03, load_average=0.8))
    2
    >>> decide_threads(CpuReading(cores=8, quota=2.5, torch_default=8, busy_elsewhere=1.0, load_average=1.0))
    2
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from tunelab import timing

__all__ = ["CpuReading", "decide_threads", "read_cpu", "set_threads", "auto_threads", "usable_cores",
           "machine_load", "free_cores"]

_TORCH_DEFAULT = torch.get_num_threads()  # torch's own choice (OMP_NUM_THREADS, cores) before we change it
_PROCESS_THREADS: Optional[int] = None  # a process worker's share: what null means in that process
_LOAD_WINDOW_S = 0.1  # the shortest window of busy cores; 10 ticks per core at Linux's 100 Hz
# a mark older than this is not a window of "now": sample afresh. `tunelab train` decides 1.3-1.6 s
# after its import; a process that began competing in the last third of the window shows as under
# half a core (and is seen by the next run: the 0.1 s samples later in a study, free_cores)
_WINDOW_MAX_S = 2.0
_LOAD_CACHE_S = 2.0  # runs started within this of a reading reuse it (no sample per tiny trial)
_OWN = {"wall": time.monotonic(), "cpu": time.process_time(), "avg": 0.0}
_LAST_LOAD: list[float] = []  # [monotonic time, load] of the last reading


@dataclass(frozen=True)
class CpuReading:
    """What the machine says when a run starts.

    cores: this process's affinity mask; quota: CPUs a cgroup allows (None: no quota);
    torch_default: torch's default thread count (follows OMP_NUM_THREADS); busy_elsewhere: cores
    other processes kept busy over the last short window (None: not measurable here);
    load_average: the 1-minute load average less this process's part (None: not known).
    """

    cores: int
    quota: Optional[float]
    torch_default: int
    busy_elsewhere: Optional[float]
    load_average: Optional[float]

    @property
    def usable(self) -> int:
        """Cores this process may use: affinity, capped by the quota and torch's default."""
        cores = self.cores if self.quota is None else min(self.cores, math.ceil(self.quota))
        return max(1, min(cores, self.torch_default))

    @property
    def load(self) -> float:
        """Cores others keep busy: the instantaneous reading; the load average only without one."""
        if self.busy_elsewhere is not None:
            return max(0.0, self.busy_elsewhere)
        return max(0.0, self.load_average or 0.0)


def decide_threads(reading: CpuReading, workers: int = 1) -> int:
    """Threads for each of ``workers`` processes: the usable cores that others leave free, split.

    Example:
        >>> quiet_after_a_command = CpuReading(2, None, 2, busy_elsewhere=0.0, load_average=0.81)
        >>> one_busy = CpuReading(2, None, 2, busy_elsewhere=1.0, load_average=1.0)
        >>> decide_threads(quiet_after_a_command), decide_threads(one_busy)
        (2, 1)
    """
    return auto_threads(reading.usable, reading.load, workers)


def auto_threads(cores: int, load: float, workers: int = 1) -> int:
    """Threads for each of ``workers`` processes on ``cores`` cores while other work keeps
    ``load`` cores busy: the free cores (``cores - round(load)``, at least 1) split evenly,
    at least 1 each. A core half busy counts as busy: one thread too many costs a small
    model 2-60x (every parallel region waits for the descheduled thread), one too few
    at most the speed-up of that core.

    Example:
        >>> auto_threads(2, 0.2), auto_threads(2, 0.5), auto_threads(2, 3.7), auto_threads(16, 0.0, workers=3)
        (2, 1, 1, 5)
    """
    if cores < 1 or workers < 1:
        raise ValueError(f"cores={cores!r}, workers={workers!r}: both must be >= 1")
    busy = math.floor(max(load, 0.0) + 0.5)  # round half up
    return max(1, min(cores, max(1, cores - busy)) // workers)


def set_threads(threads: Optional[int], *, as_default: bool = False) -> None:
    """Set torch's CPU thread count to ``threads``; None means this process's default: the
    share set with ``as_default=True`` (a process worker's), else
    ``auto_threads(usable_cores(), machine_load())``. The one caller of
    ``torch.set_num_threads`` in tunelab: runs pass ``training.threads``, process workers
    their share of the cores."""
    global _PROCESS_THREADS
    if threads is None:
        threads = _PROCESS_THREADS or auto_threads(usable_cores(), machine_load())
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if as_default:
        _PROCESS_THREADS = threads


def usable_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a container's CPU quota
    (cgroup ``cpu.max`` or ``cpu.cfs_quota_us``; torch ignores it) and by torch's default
    thread count (which follows ``OMP_NUM_THREADS``)."""
    return CpuReading(_affinity(), _cgroup_cpus(), _TORCH_DEFAULT, None, None).usable


def read_cpu(ours: Sequence[int] = ()) -> CpuReading:
    """The machine now: cores, quota, torch's default, and the busy cores of others over a short
    window (this process and the processes ``ours`` excluded)."""
    return CpuReading(_affinity(), _cgroup_cpus(), _TORCH_DEFAULT, _busy_now(ours), _load_average())


def machine_load() -> float:
    """Cores kept busy by other processes now (``read_cpu().load``): 0.0 where the system tells
    nothing. A reading is reused for 2 s (many tiny trials in one process read once)."""
    now = time.monotonic()
    if _LAST_LOAD and now - _LAST_LOAD[0] < _LOAD_CACHE_S:
        return _LAST_LOAD[1]
    load = CpuReading(1, None, 1, _busy_now(), _load_average()).load
    _LAST_LOAD[:] = [time.monotonic(), load]
    return load


def free_cores(ours: Sequence[int] = ()) -> int:
    """Usable cores that no other process keeps busy now (the processes ``ours`` count as free),
    at least 1: a process executor lending an idle worker's cores decides with it.

    Example:
        >>> 1 <= free_cores() <= usable_cores()
        True
    """
    return decide_threads(read_cpu(ours))


# ---------------------------------------------------------------------------- the readers
def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _load_average() -> Optional[float]:
    """The 1-minute load average less this process's part; None without one (Windows)."""
    try:
        return os.getloadavg()[0] - _own_load()
    except (AttributeError, OSError):
        return None


def _busy_now(ours: Sequence[int] = ()) -> Optional[float]:
    """Cores busy with other processes' work over a window ending now: since the mark taken when
    tunelab was imported if that is 0.1-2 s ago (no waiting: torch's import filled it; used once),
    else a fresh 0.1 s sample. None off Linux."""
    mark, timing.CPU_MARK[:] = list(timing.CPU_MARK), []  # [monotonic, busy CPU-s, own CPU-s] or []
    if not ours and mark and _LOAD_WINDOW_S <= time.monotonic() - mark[0] <= _WINDOW_MAX_S:
        try:
            return _others(mark, (time.monotonic(), _busy_cpu_seconds(), time.process_time()))
        except (OSError, ValueError, IndexError):
            return None
    return _busy_elsewhere(_LOAD_WINDOW_S, ours)


def _others(start: Sequence[float], end: Sequence[float]) -> float:
    """Cores others kept busy between two (monotonic, busy CPU-s of all cores, our CPU-s) marks."""
    return max(0.0, (end[1] - start[1]) - (end[2] - start[2])) / max(end[0] - start[0], 1e-9)


def _busy_elsewhere(window: float, ours: Sequence[int] = ()) -> Optional[float]:
    """Cores busy with other processes' work during ``window`` seconds (not this process's, nor
    that of the processes ``ours``: its workers); None off Linux."""
    try:
        start = (time.monotonic(), _busy_cpu_seconds(), time.process_time() + _cpu_of(ours))
        time.sleep(window)
        end = (time.monotonic(), _busy_cpu_seconds(), time.process_time() + _cpu_of(ours))
    except (OSError, ValueError, IndexError):
        return None
    return _others(start, end)


def _own_load() -> float:
    """This process's part of the 1-minute load average: its CPU use since the last call,
    folded in as the kernel folds runnable tasks (exponential decay over 60 s). Without it a
    second run in the same process would count the first run's threads as someone else's."""
    wall, cpu = time.monotonic(), time.process_time()
    elapsed = wall - _OWN["wall"]
    if elapsed > 0:
        keep = math.exp(-elapsed / 60.0)
        _OWN["avg"] = _OWN["avg"] * keep + (cpu - _OWN["cpu"]) / elapsed * (1.0 - keep)
    _OWN.update(wall=wall, cpu=cpu)
    return _OWN["avg"]


def _cpu_of(pids: Sequence[int]) -> float:
    """CPU seconds the live processes ``pids`` have used (Linux /proc; a gone one counts 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def _busy_cpu_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (steal included: the host took them)."""
    return timing.busy_cpu_seconds()


def _cgroup_cpus(root: str = "/sys/fs/cgroup") -> Optional[float]:
    """CPUs a cgroup quota allows this process (v2 ``cpu.max``, then v1); None without one."""
    for files in (["cpu.max"], ["cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us"]):
        try:
            fields = [v for name in files for v in Path(root, name).read_text().split()]
            quota, period = fields[0], float(fields[1])
            return None if quota in ("max", "-1") else max(1.0, float(quota) / period)
        except (OSError, ValueError, IndexError, ZeroDivisionError):
            continue
    return None
