"""Pruners by name (Optuna's): stop clearly bad trials on the per-epoch validation metric.

Every pruner waits for a grace period: no trial is stopped before it has trained
``grace_epochs`` epochs (default ``default_grace(max_epochs)``: a quarter of the longest
trial, at least 2). Early epochs rank configurations poorly — a large learning rate leads
after one epoch and ends behind — so judging at epoch 1 prunes the trials that would have
won (a TPE + ASHA study on digits kept 3 of 30 trials, 18 pruned at epoch 1, and ended at
0.896 validation accuracy against 0.972 for an untuned run).

Example:
    >>> type(make_pruner("asha", max_epochs=20)).__name__
    'SuccessiveHalvingPruner'
    >>> default_grace(20), default_grace(4)
    (5, 2)
    >>> make_pruner("asha", max_epochs=20, grace_epochs=3)._min_resource
    3
"""

from __future__ import annotations

import math
from typing import Optional

import optuna

from tunelab.errors import ConfigError
from tunelab.registry import Registry

__all__ = ["PRUNERS", "make_pruner", "default_grace"]

PRUNERS = Registry("pruner")
PRUNERS.register("none", lambda max_epochs, grace: optuna.pruners.NopPruner())
# median: after 3 finished trials, stop a trial whose epoch value is worse than the median of
# the others at that epoch; Optuna's warm-up skips steps < n_warmup_steps, so the first
# decision falls at epoch `grace`.
PRUNERS.register("median", lambda max_epochs, grace: optuna.pruners.MedianPruner(
    n_startup_trials=3, n_warmup_steps=grace))
# asha: asynchronous successive halving, rungs at grace, 3*grace, 9*grace ... epochs, keeping
# the top third at each rung.
PRUNERS.register("asha", lambda max_epochs, grace: optuna.pruners.SuccessiveHalvingPruner(
    min_resource=grace, reduction_factor=3))
# hyperband: brackets of successive halving between grace and max_epochs (min <= max, or
# Optuna's bracket count breaks).
PRUNERS.register("hyperband", lambda max_epochs, grace: optuna.pruners.HyperbandPruner(
    min_resource=min(grace, max(max_epochs, 1)), max_resource=max(max_epochs, 1), reduction_factor=3))


def default_grace(max_epochs: int) -> int:
    """Epochs every trial trains before a pruner may stop it: 25% of ``max_epochs``, at least 2.

    Example:
        >>> default_grace(15)
        4
    """
    return max(2, math.ceil(0.25 * max_epochs))


def make_pruner(name: str, max_epochs: int, grace_epochs: Optional[int] = None) -> optuna.pruners.BasePruner:
    """The Optuna pruner for ``name``; no trial is pruned before ``grace_epochs`` epochs.

    ``max_epochs`` is the longest trial (hyperband's budget and the default grace period's
    base); ``grace_epochs`` None means ``default_grace(max_epochs)``.
    """
    factory = PRUNERS.get(name)
    if grace_epochs is None:
        grace_epochs = default_grace(max_epochs)
    if isinstance(grace_epochs, bool) or not isinstance(grace_epochs, int) or grace_epochs < 1:
        raise ConfigError(f"grace_epochs={grace_epochs!r} is out of range; allowed: a whole number >= 1")
    return factory(max_epochs, grace_epochs)
