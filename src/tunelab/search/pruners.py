"""Pruners by name (Optuna's): stop clearly bad trials on the per-epoch validation metric.

Example:
    >>> type(make_pruner("asha", max_epochs=20)).__name__
    'SuccessiveHalvingPruner'
"""

from __future__ import annotations

import optuna

from tunelab.registry import Registry

__all__ = ["PRUNERS", "make_pruner"]

PRUNERS = Registry("--pruner")
PRUNERS.register("none", lambda max_epochs: optuna.pruners.NopPruner())
# median: after 3 finished trials, stop a trial whose epoch value is worse than the median
# of the others at that epoch (never in its first epoch).
PRUNERS.register("median", lambda max_epochs: optuna.pruners.MedianPruner(
    n_startup_trials=3, n_warmup_steps=1))
# asha: asynchronous successive halving with rungs at 1, 3, 9, ... epochs, keeping the top third.
PRUNERS.register("asha", lambda max_epochs: optuna.pruners.SuccessiveHalvingPruner(
    min_resource=1, reduction_factor=3))
PRUNERS.register("hyperband", lambda max_epochs: optuna.pruners.HyperbandPruner(
    min_resource=1, max_resource=max(max_epochs, 1), reduction_factor=3))


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    """The Optuna pruner for ``name``; ``max_epochs`` is the longest trial (hyperband's budget)."""
    return PRUNERS.get(name)(max_epochs)
