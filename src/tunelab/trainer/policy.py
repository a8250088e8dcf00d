"""The epoch-end policy: a pure function of run state, metrics, config and the caller's answer.

``epoch_end(state, metrics, cfg, answer)`` records the epoch, then decides, in this order:
divergence (a NaN or infinite loss), reduce-on-plateau, early stopping (with the user's on/off
switch), and the caller's answer ("stop"). It returns the new state and an ``EpochAction``:
whether to stop and with which status, and whether this epoch is a new best (time to keep its
weights). fit() and the population trainer both call it; it touches no tensor and no clock.

Example:
    >>> from tunelab.config import from_dict
    >>> cfg = from_dict({}, ["training.early_stopping.enabled=true", "training.early_stopping.patience=1"])
    >>> state = RunState()
    >>> for loss in [1.0, 0.9, 0.95]:
    ...     m = dict(train_loss=loss, val_loss=loss, train_accuracy=0.5, val_accuracy=0.5)
    ...     state, action = epoch_end(state, m, cfg)
    >>> state.epoch, action.stop, action.message
    (3, 'early_stopped', 'val_loss did not improve for 1 epochs')
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal, Optional

from tunelab.config import RunConfig
from tunelab.optim.schedules import plateau_applies, plateau_step
from tunelab.trainer.callbacks import early_stop_step
from tunelab.trainer.state import RunState

__all__ = ["EpochAction", "epoch_end", "early_stopping_on", "diverged_loss", "keep_best"]

StopStatus = Literal["diverged", "early_stopped", "stopped"]


@dataclass(frozen=True)
class EpochAction:
    """What the trainer does after an epoch: ``stop`` (None: go on) with ``message``; ``best``
    is True when the monitored metric improved (keep these weights)."""

    stop: Optional[StopStatus] = None
    message: str = ""
    best: bool = False


def early_stopping_on(state: RunState, cfg: RunConfig) -> bool:
    """The configured switch, unless the user turned it on or off during the run."""
    return cfg.training.early_stopping.enabled if state.early_stopping is None else state.early_stopping


def keep_best(state: RunState, cfg: RunConfig, action: EpochAction) -> bool:
    """Whether to keep this epoch's weights as the best: the monitor improved while early stopping
    is on, or may be switched back on (the user touched the switch), and restores its best."""
    switchable = cfg.training.early_stopping.enabled or state.early_stopping is not None
    return action.best and switchable and cfg.training.early_stopping.restore_best


def diverged_loss(metrics: dict[str, float]) -> Optional[float]:
    """The first non-finite loss of an epoch's metrics, or None. A loss measured on no examples
    (no validation set: loss and accuracy both NaN) is not a divergence.

    Example:
        >>> nan = float("nan")
        >>> diverged_loss(dict(train_loss=0.3, val_loss=nan, val_accuracy=0.5))
        nan
        >>> diverged_loss(dict(train_loss=0.3, val_loss=nan, val_accuracy=nan)) is None
        True
    """
    for loss, acc in (("train_loss", None), ("train_eval_loss", "train_eval_accuracy"), ("val_loss", "val_accuracy")):
        value = metrics.get(loss, 0.0)
        if not math.isfinite(value) and (acc is None or math.isfinite(metrics.get(acc, 0.0))):
            return value
    return None


def _divergence_hint(cfg: RunConfig) -> str:
    """What to change after a divergence: the lr, and a weight decay large enough to be a cause."""
    hint = f"lower optimizer.lr (now {cfg.optimizer.lr:g})"
    if cfg.optimizer.weight_decay >= 0.1:
        hint += f" or optimizer.weight_decay (now {cfg.optimizer.weight_decay:g})"
    return hint + "; check the data for extreme values if neither helps"


def epoch_end(state: RunState, metrics: dict[str, float], cfg: RunConfig,
              answer: Optional[str] = None) -> tuple[RunState, EpochAction]:
    """Record epoch ``state.epoch`` with ``metrics`` and decide what happens next."""
    epoch = state.epoch
    state = dataclasses.replace(state, epoch=epoch + 1, step=0, history=(*state.history, dict(metrics)))
    # ---- divergence: never carry a NaN result forward
    bad = diverged_loss(metrics)
    if bad is not None:
        return state, EpochAction("diverged", f"loss became {bad} at epoch {epoch + 1}; {_divergence_hint(cfg)}")
    # ---- reduce-on-plateau
    if plateau_applies(cfg.schedule, epoch):
        state = dataclasses.replace(state, plateau=plateau_step(
            state.plateau, metrics[cfg.schedule.monitor], cfg.schedule, cfg.optimizer.lr))
    # ---- early stopping (the monitor runs even when off: best.pt follows it)
    es = dataclasses.replace(cfg.training.early_stopping, enabled=early_stopping_on(state, cfg))
    early = early_stop_step(state.early, epoch, metrics[es.monitor], es)
    state = dataclasses.replace(state, early=early)
    if early.stop:
        return state, EpochAction("early_stopped", f"{es.monitor} did not improve for {es.patience} epochs",
                                  early.improved)
    # ---- the caller's answer
    if answer == "stop":
        return state, EpochAction("stopped", "stopped by the caller", early.improved)
    return state, EpochAction(None, "", early.improved)
