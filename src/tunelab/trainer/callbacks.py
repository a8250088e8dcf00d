"""Early stopping as state in, state out; driven by the shared monitor policy.

Example:
    >>> from tunelab.config import EarlyStoppingConfig
    >>> cfg = EarlyStoppingConfig(enabled=True, monitor="val_loss", patience=1)
    >>> s = EarlyStopState()
    >>> for epoch, loss in enumerate([1.0, 0.8, 0.9, 0.95]):
    ...     s = early_stop_step(s, epoch, loss, cfg)
    >>> s.stop, s.best_epoch, s.best
    (True, 1, 0.8)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tunelab.config import EarlyStoppingConfig
from tunelab.monitor import improved, initial_best, resolve_mode

__all__ = ["EarlyStopState", "early_stop_step"]


@dataclass(frozen=True)
class EarlyStopState:
    best: float = math.nan
    best_epoch: int = -1
    wait: int = 0
    stop: bool = False
    improved: bool = False  # did the last step set a new best (time to snapshot weights)


def early_stop_step(state: EarlyStopState, epoch: int, value: float,
                    cfg: EarlyStoppingConfig) -> EarlyStopState:
    """Keras' EarlyStopping: stop after ``patience`` epochs without an improvement > min_delta."""
    mode = resolve_mode(cfg.monitor, cfg.mode)
    best = initial_best(mode) if math.isnan(state.best) else state.best
    if improved(value, best, mode, abs_delta=cfg.min_delta):
        return EarlyStopState(value, epoch, 0, False, True)
    wait = state.wait + 1
    return EarlyStopState(best, state.best_epoch, wait, cfg.enabled and wait >= cfg.patience, False)
