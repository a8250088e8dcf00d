"""One run preparation for every command and executor: threads, device, data, seeds, model.

``prepare(cfg)`` is the only place that sets torch's thread count for a run, loads a run's
data and builds its model, so ``tunelab train``, tune and compare trials, ``inspect``,
``lr-find`` and ``ensemble`` start a run the same way (the same initial weights for a seed,
the same ``training.threads``).

Threads: ``training.threads: null`` means auto, the cores that other work leaves free
(``auto_threads``), because torch's default (every core) makes a small model several times,
and on a busy machine 10-60 times, slower once another process competes for the cores
(docs/benchmarks.md, "Threads on a shared CPU"). An integer wins.

Example:
    >>> from tunelab.config import from_dict
    >>> run = prepare(from_dict({"model": {"hidden": [16]}}))
    >>> run.device.type, run.data.name, sum(p.numel() for p in run.model.parameters())
    ('cpu', 'digits', 1210)
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from tunelab.config import RunConfig
from tunelab.errors import ConfigError

__all__ = ["Run", "prepare", "new_model", "set_threads", "auto_threads", "usable_cores", "machine_load",
           "free_cores", "resolve_device", "load_run_data"]

_DATA_CACHE: dict[tuple, Any] = {}
_TORCH_DEFAULT = torch.get_num_threads()  # torch's own choice (OMP_NUM_THREADS, cores) before we change it
_PROCESS_THREADS: Optional[int] = None  # a process worker's share: what null means in that process
_LOAD_WINDOW_S = 0.1  # the sample of busy cores; 10 ticks per core at Linux's 100 Hz
_LOAD_CACHE_S = 2.0  # runs started within this of a reading reuse it (no sample per tiny trial)
_OWN = {"wall": time.monotonic(), "cpu": time.process_time(), "avg": 0.0}
_LAST_LOAD: list[float] = []  # [monotonic time, load] of the last reading


@dataclass
class Run:
    """A prepared run: its config, resident data, freshly initialized model and device."""

    cfg: RunConfig
    data: Any  # DataBundle
    model: torch.nn.Module
    device: torch.device


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device='cuda' but no CUDA device is available; choose 'cpu' or 'auto'")
    return torch.device(name)


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


def usable_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a container's CPU quota
    (cgroup ``cpu.max`` or ``cpu.cfs_quota_us``; torch ignores it) and by torch's default
    thread count (which follows ``OMP_NUM_THREADS``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, min(cores, _TORCH_DEFAULT))


def machine_load() -> float:
    """Cores kept busy by other processes now: the larger of the 1-minute load average less
    this process's own part of it, and the busy cores of the last 0.1 s less this process's
    (Linux ``/proc/stat``; a load that began seconds ago shows there, not yet in the average).
    0.0 where the system tells neither. A reading is reused for 2 s."""
    now = time.monotonic()
    if _LAST_LOAD and now - _LAST_LOAD[0] < _LOAD_CACHE_S:
        return _LAST_LOAD[1]
    try:
        average = os.getloadavg()[0] - _own_load()
    except (AttributeError, OSError):  # no load average (Windows)
        average = 0.0
    load = max(average, _busy_elsewhere(_LOAD_WINDOW_S) or 0.0, 0.0)
    _LAST_LOAD[:] = [time.monotonic(), load]
    return load


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


def _busy_elsewhere(window: float, ours: Sequence[int] = ()) -> Optional[float]:
    """Cores busy with other processes' work during ``window`` seconds (not this process's, nor
    that of the processes ``ours``: its workers); None off Linux."""
    try:
        busy0, own0, t0 = _busy_cpu_seconds(), time.process_time() + _cpu_of(ours), time.monotonic()
        time.sleep(window)
        busy1, own1, t1 = _busy_cpu_seconds(), time.process_time() + _cpu_of(ours), time.monotonic()
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0)


def free_cores(ours: Sequence[int] = ()) -> int:
    """Usable cores that no other process keeps busy now (measured over 0.1 s; the processes
    ``ours`` count as free), at least 1. A moment's reading, for a decision taken now (a process
    executor lending an idle worker's cores): the load average would still count work that ended.

    Example:
        >>> 1 <= free_cores() <= usable_cores()
        True
    """
    busy = _busy_elsewhere(_LOAD_WINDOW_S, ours)
    return auto_threads(usable_cores(), busy if busy is not None else machine_load())


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
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]  # user .. steal; guest is inside user
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


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


def load_run_data(cfg: RunConfig, cache: bool = False):
    """The DataBundle of ``cfg.data`` on the run's device; ``cache`` keeps one dataset
    resident per process (search workers reuse it across trials)."""
    from tunelab.data import load_data

    device = resolve_device(cfg.training.device)
    if not cache:
        return load_data(cfg.data, device=device)
    key = (repr(cfg.data), str(device))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one dataset per process
        _DATA_CACHE[key] = load_data(cfg.data, device=device)
    return _DATA_CACHE[key]


def prepare(cfg: RunConfig, *, data: Any = None, model: Optional[torch.nn.Module] = None,
            cache: bool = False) -> Run:
    """Threads, device, data (``data`` if given), then the model built under
    ``training.seed`` (``model`` if given: the user's own module, moved to the device)."""
    from tunelab.data.augment import check_augment
    from tunelab.nn import build_model

    set_threads(cfg.training.threads)
    data = load_run_data(cfg, cache) if data is None else data
    if data.is_image or cfg.augment.active:
        check_augment(cfg.augment, data)
    device = data.x_train.device
    if model is None:
        check_memory(cfg, data.input_shape, data.num_classes, device)
    torch.manual_seed(cfg.training.seed)  # the initial weights
    net = model if model is not None else build_model(cfg.model, data.input_shape, data.num_classes)
    return Run(cfg, data, net.to(device), device)


def model_size(cfg: RunConfig, input_shape: tuple, num_classes: int) -> int:
    """Parameters of ``cfg``'s model for inputs of ``input_shape``, built on the meta device (shapes
    only: no memory, no initialization, no random draw).

    Example:
        >>> from tunelab.config import from_dict
        >>> model_size(from_dict({"model": {"hidden": [4]}}), (64,), 10)
        310
    """
    from tunelab.nn import build_model

    with torch.device("meta"):
        model = build_model(cfg.model, tuple(input_shape), num_classes, init=False)
    return sum(p.numel() for p in model.parameters())


SKIP_MEMORY_CHECK = "TUNELAB_SKIP_MEMORY_CHECK"  # set: train even when the estimate says it will not fit


def memory_estimate(cfg: RunConfig, input_shape: tuple, num_classes: int) -> Optional[tuple[int, int]]:
    """(parameters, bytes) a training step of ``cfg`` needs, estimated on the meta device (no
    memory used): weights, gradients and two optimizer states per parameter, and every layer's
    output for a batch of ``training.batch_size`` twice (kept for the backward pass, and its
    gradient), in float32. None when the model cannot run on the meta device.

    Example:
        >>> from tunelab.config import from_dict
        >>> p, b = memory_estimate(from_dict({"model": {"hidden": [4]}, "training": {"batch_size": 8}}), (64,), 10)
        >>> p, b > 4 * 4 * p
        (310, True)
    """
    from tunelab.nn import build_model

    outputs = [0]

    def count(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if not list(module.children()) and isinstance(output, torch.Tensor):
            outputs[0] += output.numel()

    try:
        with torch.device("meta"):
            model = build_model(cfg.model, tuple(input_shape), num_classes, init=False)
            hooks = [m.register_forward_hook(count) for m in model.modules()]
            model.train()
            model(torch.empty((cfg.training.batch_size, *input_shape)))
        for h in hooks:
            h.remove()
    except Exception:  # noqa: BLE001 - a module the meta device cannot run: no estimate
        return None
    params = sum(p.numel() for p in model.parameters())
    return params, 4 * (4 * params + 2 * outputs[0])


def _mlp_bound(cfg: RunConfig, input_shape: tuple, num_classes: int) -> Optional[int]:
    """An upper bound of ``memory_estimate``'s bytes for an mlp, without running it: every leaf
    module's output is at most as wide as the widest of the input, a hidden layer and the classes.
    None for other models.

    Example:
        >>> from tunelab.config import from_dict
        >>> cfg = from_dict({"model": {"hidden": [4]}, "training": {"batch_size": 8}})
        >>> _mlp_bound(cfg, (64,), 10) >= memory_estimate(cfg, (64,), 10)[1]
        True
    """
    from tunelab.nn import build_model

    if cfg.model.name != "mlp":
        return None
    with torch.device("meta"):
        model = build_model(cfg.model, tuple(input_shape), num_classes, init=False)
    params = sum(p.numel() for p in model.parameters())
    leaves = sum(1 for m in model.modules() if not list(m.children()))
    widest = max([math.prod(input_shape), num_classes, *cfg.model.hidden])
    return 4 * (4 * params + 2 * leaves * widest * cfg.training.batch_size)


def available_memory(device: torch.device) -> Optional[int]:
    """Bytes free on ``device``: CUDA's free memory, else the machine's MemAvailable (None: unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(cfg: RunConfig, input_shape: tuple, num_classes: int, device: torch.device) -> None:
    """A one-line ConfigError when the model and a batch clearly do not fit in the memory free on
    ``device`` (the estimate above 90% of it), before anything is allocated."""
    if os.environ.get(SKIP_MEMORY_CHECK):
        return
    free = available_memory(device)
    bound = _mlp_bound(cfg, input_shape, num_classes)
    if free is None or (bound is not None and bound <= 0.9 * free):
        return  # fits for sure: no forward on the meta device (its first use imports a second of torch)
    estimate = memory_estimate(cfg, input_shape, num_classes)
    if estimate is None or estimate[1] <= 0.9 * free:
        return
    params, need = estimate
    raise ConfigError(f"model.{cfg.model.name} with training.batch_size={cfg.training.batch_size} needs about "
                      f"{need / 2**30:.1f} GiB to train ({params:,} parameters and the batch's activations), "
                      f"and {device.type} has {free / 2**30:.1f} GiB free; allowed: a smaller model or batch "
                      f"(or set {SKIP_MEMORY_CHECK}=1 to try anyway)")


def new_model(cfg: RunConfig, input_shape: tuple, num_classes: int) -> torch.nn.Module:
    """The model of ``cfg`` with the initial weights ``prepare`` gives it (seeded by
    ``training.seed``), for a caller that has its data already (loading a trained run).

    Example:
        >>> from tunelab.config import from_dict
        >>> new_model(from_dict({"model": {"hidden": [4]}}), (64,), 10).fc0[0].out_features
        4
    """
    from tunelab.nn import build_model

    torch.manual_seed(cfg.training.seed)
    return build_model(cfg.model, input_shape, num_classes)
