"""Executors: run trial specs, stream their events, obey the driver's prune decisions.

``inline`` runs trials one by one in the driver's process; ``processes`` runs them in
long-lived worker processes, one trial per worker at a time (with population-based training: each
member a run folder trained ``interval`` epochs at a time, copied through its checkpoints,
``pbt_checkpoints``); ``population`` trains up to K mlp/cnn trials of one structure together as one
stacked computation in the driver's process; ``ray`` runs them as Ray actors on a cluster (the
optional extra ``tunelab[ray]``). All pull specs
lazily from an iterator and are interchangeable behind the ``Executor`` protocol.

Example:
    >>> sorted(EXECUTORS)
    ['inline', 'population', 'processes', 'ray']
    >>> type(make_executor(1)).__name__
    'InlineExecutor'
    >>> type(make_executor(1, "population", population_size=8)).__name__
    'PopulationExecutor'
"""

from __future__ import annotations

from typing import Optional

from tunelab.errors import ConfigError
from tunelab.execute.base import Decision, Event, Executor, TrialSpec
from tunelab.execute.inline import InlineExecutor
from tunelab.execute.population import DEFAULT_SIZE, PopulationExecutor
from tunelab.execute.processes import ProcessExecutor
from tunelab.execute.trial import Reporter, TrialPruned, execute_trial
from tunelab.registry import Registry

__all__ = [
    "TrialSpec", "Event", "Decision", "Executor", "execute_trial", "Reporter", "TrialPruned",
    "InlineExecutor", "ProcessExecutor", "PopulationExecutor", "EXECUTORS", "EXECUTOR_NAMES", "make_executor", "auto_population",
    "RAY_OPTIONS", "max_local_workers",
]

EXECUTORS = Registry("--executor")


@EXECUTORS.register("inline")
def _inline(workers: int = 1, population_size: Optional[int] = None, pbt=None, ray=None) -> InlineExecutor:
    if workers != 1:
        raise ConfigError(f"--workers={workers!r} needs --executor processes; "
                          "--executor inline runs one trial at a time")
    return InlineExecutor()


@EXECUTORS.register("processes")
def _processes(workers: int = 2, population_size: Optional[int] = None, pbt=None, ray=None,
               trial_timeout: Optional[float] = None):
    if pbt is not None:  # population-based training of run folders, from their checkpoints
        from tunelab.execute.pbt_checkpoints import CheckpointPBTExecutor

        return CheckpointPBTExecutor(workers, pbt)
    return ProcessExecutor(workers, trial_timeout=trial_timeout)


@EXECUTORS.register("population")
def _population(workers: int = 1, population_size: Optional[int] = None, pbt=None, ray=None) -> PopulationExecutor:
    return PopulationExecutor(DEFAULT_SIZE if population_size is None else population_size, workers, pbt)


@EXECUTORS.register("ray")
def _ray(workers: int = 1, population_size: Optional[int] = None, pbt=None, ray=None,
         trial_timeout: Optional[float] = None):
    """Trials as Ray actors; ``workers`` > 1 caps the actors busy (1: as many as the cluster holds);
    ``population_size`` K: buckets of up to K mlp/cnn trials, each trained as one population in one actor."""
    from tunelab.execute.ray import RayExecutor

    if pbt is not None:
        raise ConfigError("--executor ray does not run --sampler pbt; use --executor population or processes")
    return RayExecutor(**(ray or {}), workers=workers if workers > 1 else None, population_size=population_size,
                       trial_timeout=trial_timeout)


# the options of --executor ray (tune(ray=...), the CLI's --address, --trial-cpus, --trial-gpus, --max-retries)
RAY_OPTIONS = ("address", "trial_cpus", "trial_gpus", "max_retries")


EXECUTOR_NAMES = ["auto", *EXECUTORS.names()]

RAY_MAX_WORKERS = 10_000  # --workers with --executor ray: trials in flight on a cluster


def max_local_workers() -> int:
    """The most ``--workers`` one machine takes: 4 processes per core (more only thrash), at least 8.

    Example:
        >>> max_local_workers() >= 8
        True
    """
    import os

    return max(8, 4 * (os.cpu_count() or 1))

# the largest member (parameters) for which --executor auto picks the population: measured on a 2-core
# CPU (docs/benchmarks.md), 64 digits MLPs of 6.5k parameters train 1.75x faster as a population than
# inline, while 16 MNIST MLPs of 235k train faster in two worker processes
AUTO_POPULATION_MAX = 50_000


def auto_population(config: dict) -> bool:
    """Whether --executor auto trains trials of the base ``config`` as a population: tunelab's mlp or
    cnn on a built-in dataset whose shape is known, members small enough (AUTO_POPULATION_MAX).

    Example:
        >>> small = {"data": {"name": "digits"}, "model": {"hidden": [64, 32]}}
        >>> auto_population(small), auto_population({"data": {"name": "mnist"}})
        (True, False)
    """
    from tunelab.config import from_dict
    from tunelab.data.catalog import INFO
    from tunelab.errors import TunelabError
    from tunelab.trainer.prepare import model_size

    try:
        cfg = from_dict(config)
    except TunelabError:
        return False
    info = INFO.get(cfg.data.name) or {}
    if cfg.model.name not in ("mlp", "cnn") or not info.get("input_shape") or cfg.training.log:
        return False
    try:
        return model_size(cfg, info["input_shape"], info["num_classes"]) <= AUTO_POPULATION_MAX
    except TunelabError:  # a shape the model refuses: the trials report it
        return False


def make_executor(workers: int, executor: str = "auto", population_size: Optional[int] = None,
                  pbt=None, population: bool = False, ray: Optional[dict] = None,
                  trial_timeout: Optional[float] = None) -> Executor:
    """The executor named ``executor`` for ``workers`` parallel trials; ``auto``: the population
    when the caller found it faster (``population``: see ``auto_population``), else inline for 1
    worker and processes for more (processes too when ``trial_timeout`` is set). ``ray``: the options
    of ``executor="ray"`` (RAY_OPTIONS). ``trial_timeout`` (seconds, processes or ray): a trial that runs
    longer is failed and its worker killed and replaced (a hung or stopped worker too).

    Example:
        >>> type(make_executor(2)).__name__
        'ProcessExecutor'
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"--workers={workers!r} is not allowed; use a whole number >= 1")
    top = RAY_MAX_WORKERS if executor == "ray" else max_local_workers()
    if workers > top:
        where = "trials in flight on a Ray cluster" if executor == "ray" else "4 processes per core here"
        raise ConfigError(f"--workers={workers} is out of range; allowed: 1 to {top} ({where})")
    if executor not in EXECUTOR_NAMES:
        raise ConfigError(f"--executor={executor!r} is not known; choose one of {EXECUTOR_NAMES}")
    if population_size is not None and executor not in ("population", "ray"):
        raise ConfigError(f"--population-size={population_size!r} needs --executor population or ray; "
                          f"got --executor {executor}")
    if ray:
        unknown = sorted(set(ray) - set(RAY_OPTIONS))
        if unknown:
            raise ConfigError(f"ray option {unknown[0]!r} is not known; allowed: {list(RAY_OPTIONS)}")
        if executor != "ray":
            given = "--" + next(iter(ray)).replace("_", "-")
            raise ConfigError(f"{given} needs --executor ray; got --executor {executor}")
    if executor == "auto":  # a trial timeout needs a process to stop: the process executor
        executor = ("processes" if trial_timeout is not None else "population" if population
                    else "inline" if workers == 1 else "processes")
    if trial_timeout is not None and (executor not in ("processes", "ray") or pbt is not None):
        raise ConfigError(f"--trial-timeout needs --executor processes or ray (a trial is stopped by killing "
                          f"its worker); got --executor {executor}")
    kw = {"trial_timeout": trial_timeout} if trial_timeout is not None else {}
    return EXECUTORS.get(executor)(workers=workers, population_size=population_size, pbt=pbt, ray=ray, **kw)
