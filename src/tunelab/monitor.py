"""One monitor policy shared by early stopping and reduce-on-plateau (as in Keras).

Example:
    >>> resolve_mode("val_loss", "auto"), resolve_mode("val_accuracy", "auto")
    ('min', 'max')
    >>> improved(0.5, 0.6, "min", abs_delta=0.05)
    True
"""

from __future__ import annotations

import math

__all__ = ["resolve_mode", "improved", "initial_best"]


def resolve_mode(monitor: str, mode: str) -> str:
    """'auto' means max for accuracies, min for everything else (losses)."""
    if mode != "auto":
        return mode
    return "max" if "acc" in monitor else "min"


def initial_best(mode: str) -> float:
    return math.inf if mode == "min" else -math.inf


def improved(value: float, best: float, mode: str, *, abs_delta: float = 0.0,
             rel_delta: float = 0.0) -> bool:
    """True when ``value`` beats ``best`` by more than an absolute and a relative margin.

    ``rel_delta`` follows torch's ReduceLROnPlateau ``threshold_mode='rel'``: for 'min' the
    value must be below ``best * (1 - rel_delta)``.
    """
    if math.isnan(value):
        return False
    if mode == "min":
        return value < best * (1 - rel_delta) - abs_delta if math.isfinite(best) else value < best
    return value > best * (1 + rel_delta) + abs_delta if math.isfinite(best) else value > best
