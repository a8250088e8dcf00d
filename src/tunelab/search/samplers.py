"""Samplers by name: Optuna's (random, tpe, gp, grid) and tunelab's coarse-to-fine.

A factory takes ``(space, seed, **options)`` and returns an ``optuna.samplers.BaseSampler``.
Samplers propose values in Optuna's param space (``space.optuna_params()``); turn a trial's
params into a config with ``space.apply(space.base, space.decode(trial.params))``.

Example:
    >>> from tunelab.search.space import SearchSpace
    >>> space = SearchSpace.from_dict({"space": {
    ...     "optimizer.lr": {"log_uniform": [1e-4, 0.1], "points": 4},
    ...     "training.batch_size": {"choice": [32, 64, 128]}}})
    >>> grid_size(space)
    12
    >>> type(make_sampler("tpe", space, seed=0)).__name__
    'TPESampler'
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import optuna

from tunelab.errors import ConfigError
from tunelab.registry import Registry
from tunelab.search.coarse_to_fine import CoarseToFineSampler, auto_round_size
from tunelab.search.space import SearchSpace

__all__ = ["SAMPLERS", "grid_size", "grid_space", "make_sampler"]

SAMPLERS = Registry("--sampler")


@SAMPLERS.register("random")
def _random(space: SearchSpace, seed: int | None) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


@SAMPLERS.register("pbt")
def _pbt(space: SearchSpace, seed: int | None) -> optuna.samplers.BaseSampler:
    """Population-based training: the first values at random; the population executor then
    exploits and explores while the members train (tunelab.population.pbt)."""
    return optuna.samplers.RandomSampler(seed=seed)


@SAMPLERS.register("tpe")
def _tpe(space: SearchSpace, seed: int | None, n_startup_trials: int = 10
         ) -> optuna.samplers.BaseSampler:
    # multivariate: model the params jointly; constant_liar: running trials count as bad
    # guesses, so parallel workers do not all propose the same point.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                      n_startup_trials=n_startup_trials)


@SAMPLERS.register("gp")
def _gp(space: SearchSpace, seed: int | None, n_startup_trials: int = 10
        ) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials)


class _Grid(optuna.samplers.GridSampler):
    """Optuna's grid sampler, whose ``study.stop()`` when the grid is used up runs only inside
    ``study.optimize`` (where it ends an endless optimize); tunelab's driver asks and tells by
    itself and stops at the grid's size."""

    def after_trial(self, study, trial, state, values) -> None:
        if getattr(study._thread_local, "in_optimize_loop", False):  # Optuna's own flag
            super().after_trial(study, trial, state, values)


@SAMPLERS.register("grid")
def _grid(space: SearchSpace, seed: int | None) -> optuna.samplers.BaseSampler:
    return _Grid(grid_space(space), seed=seed)


@SAMPLERS.register("coarse-to-fine")
def _coarse_to_fine(space: SearchSpace, seed: int | None, round_size: int | None = None, trials: int = 100,
                    keep: float = 0.25, margin: float = 0.1, explore: float = 0.1) -> optuna.samplers.BaseSampler:
    """``round_size`` None: ``auto_round_size(trials, number of parameters)``, as ``tune`` picks it."""
    if round_size is None:
        round_size = auto_round_size(trials, len(space.params))
    return CoarseToFineSampler(space, round_size=round_size, keep=keep, margin=margin, explore=explore, seed=seed)


def grid_space(space: SearchSpace) -> dict[str, list[Any]]:
    """Optuna param name -> grid values in Optuna's space (1 - x, JSON strings for lists)."""
    return {space.param_name(k): d.optuna_grid(k) for k, d in space.params.items()}


def grid_size(space: SearchSpace) -> int:
    """Number of grid points: the product of each key's value count."""
    return math.prod(len(v) for v in grid_space(space).values())


def make_sampler(name: str, space: SearchSpace, seed: int | None = None, **options: Any
                 ) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` for ``space``; options are the factory's keyword arguments."""
    factory = SAMPLERS.get(name)
    allowed = [p for p in inspect.signature(factory).parameters if p not in ("space", "seed")]
    for option in options:
        if option not in allowed:
            raise ConfigError(f"--sampler {name} does not take option {option!r}; "
                              f"allowed: {allowed}")
    return factory(space, seed, **options)
