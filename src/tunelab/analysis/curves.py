"""Warnings in words about a training history, read while it grows (the live dashboard).

``warnings_for(history, patience)`` is a pure function of the epoch rows (``epoch``,
``train_loss``, ``val_loss``, ...): no clock, no tensor, so scripted histories test it.
It names three things worth acting on: a loss that explodes (non-finite, or the train loss
grown ``explode`` times over its lowest value), over-fitting (validation loss above its
minimum for the last ``rising`` epochs while the train loss keeps falling), and no
improvement of the monitored metric for ``patience`` epochs.

Example:
    >>> rows = [dict(epoch=i + 1, train_loss=t, val_loss=v)
    ...         for i, (t, v) in enumerate([(1.0, 1.0), (0.6, 0.7), (0.4, 0.8), (0.3, 0.9), (0.2, 1.0)])]
    >>> warnings_for(rows, patience=5)
    ['validation loss rising while train loss falls: over-fitting from epoch 3 (lowest validation loss 0.7 at epoch 2)']
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from tunelab.monitor import improved, initial_best, resolve_mode

__all__ = ["warnings_for"]


def _epoch(history: Sequence[Mapping], i: int) -> int:
    return int(history[i].get("epoch", i + 1))


def warnings_for(history: Sequence[Mapping[str, float]], patience: int = 5, monitor: str = "val_loss",
                 mode: str = "auto", min_delta: float = 0.0, explode: float = 2.0, rising: int = 3,
                 rise: float = 0.05) -> list[str]:
    """The warnings that hold for ``history`` now, most urgent first (empty: none).

    ``patience`` <= 0 turns the no-improvement warning off; ``monitor``, ``mode`` and
    ``min_delta`` mean what they mean for early stopping; ``rise`` is the relative margin
    above its minimum that counts as a rising validation loss (noise stays quiet).

    Example:
        >>> rows = [dict(epoch=1, train_loss=0.5, val_loss=0.5), dict(epoch=2, train_loss=float("nan"), val_loss=0.4)]
        >>> warnings_for(rows)
        ['loss exploding: train loss is nan at epoch 2']
    """
    if not history:
        return []
    for i, row in enumerate(history):  # a broken run: the other warnings would read garbage
        for key in ("train_loss", "val_loss"):
            value = row.get(key, math.nan)
            no_split = key == "val_loss" and math.isnan(value) and math.isnan(row.get("val_accuracy", 0.0))
            if not math.isfinite(value) and not no_split:  # (no validation set: loss and accuracy NaN)
                return [f"loss exploding: {key.replace('_', ' ')} is {value} at epoch {_epoch(history, i)}"]
    out = []
    train = [row["train_loss"] for row in history]
    low = min(range(len(train) - 1), key=train.__getitem__, default=None)
    if low is not None and train[-1] > explode * train[low]:
        out.append(f"loss exploding: train loss grew from {train[low]:.3g} at epoch {_epoch(history, low)} "
                   f"to {train[-1]:.3g} at epoch {_epoch(history, len(train) - 1)}")
    val = [row["val_loss"] for row in history]
    best = min(range(len(val)), key=val.__getitem__)  # the first of equal minima
    recent = val[len(val) - rising:] if rising > 0 else []
    # every one of the last ``rising`` epochs above the minimum: one noisy epoch is no trend
    if (len(val) - 1 - best >= rising > 0 and min(recent) > val[best] * (1 + rise) and train[-1] < train[best]):
        out.append(f"validation loss rising while train loss falls: over-fitting from epoch "
                   f"{_epoch(history, best + 1)} (lowest validation loss {val[best]:.3g} at epoch "
                   f"{_epoch(history, best)})")
    if patience > 0:
        direction = resolve_mode(monitor, mode)
        best_value, best_at = initial_best(direction), None
        for i, row in enumerate(history):  # the same rule as early stopping: improve by > min_delta
            if improved(row.get(monitor, math.nan), best_value, direction, abs_delta=min_delta):
                best_value, best_at = row[monitor], i
        since = len(history) - 1 - best_at if best_at is not None else len(history)
        if since >= patience:
            where = "" if best_at is None else f" (best {monitor} {best_value:.4g} at epoch {_epoch(history, best_at)})"
            out.append(f"no improvement for {since} epochs{where}")
    return out
