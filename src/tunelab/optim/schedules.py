"""Learning-rate schedules: pure rules ``lr_at`` plus reduce-on-plateau as state in, state out.

Epoch-based rules (constant, step, exponential, cosine) change the lr at epoch boundaries,
like torch.optim.lr_scheduler stepped once per epoch; one-cycle changes it every batch,
like torch's OneCycleLR. A linear warmup (``warmup_epochs``) can precede any of them.

Example:
    >>> from tunelab.config import ScheduleConfig
    >>> cfg = ScheduleConfig(name="step", step_size=2, gamma=0.5)
    >>> [lr_at(e, 0, 1.0, cfg, epochs=6, steps_per_epoch=1) for e in range(6)]
    [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Optional

from tunelab.config import ScheduleConfig
from tunelab.monitor import improved, initial_best, resolve_mode
from tunelab.registry import Registry

__all__ = ["SCHEDULES", "lr_at", "lr_factor", "PlateauState", "plateau_step", "plateau_applies", "LrSchedule"]

SCHEDULES = Registry("schedule.name")


def _cosine(e: int, cfg: ScheduleConfig, base: float, span: int) -> float:
    floor = min(cfg.min_lr, base)
    return floor + (base - floor) * (1 + math.cos(math.pi * min(e, span) / span)) / 2


SCHEDULES.register("constant", lambda e, cfg, base, span: base)
SCHEDULES.register("plateau", lambda e, cfg, base, span: base)  # its changes live in PlateauState
SCHEDULES.register("step", lambda e, cfg, base, span: base * cfg.gamma ** (e // cfg.step_size))
SCHEDULES.register("exponential", lambda e, cfg, base, span: base * cfg.gamma ** e)
SCHEDULES.register("cosine", _cosine)


def _anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)


def _onecycle(t: int, total: int, base: float, cfg: ScheduleConfig) -> float:
    """torch's OneCycleLR (two phases, cosine annealing) at global step ``t`` of ``total``."""
    initial = base / cfg.div_factor
    end_up = float(cfg.pct_start * total) - 1
    if t <= end_up:
        return _anneal(initial, base, t / end_up)
    return _anneal(base, initial / cfg.final_div_factor, (t - end_up) / (total - 1 - end_up))


SCHEDULES.register("onecycle", _onecycle)  # per-step rule: lr_at calls it with the global step


def lr_at(epoch: int, step: int, base: float, cfg: ScheduleConfig, epochs: int,
          steps_per_epoch: int) -> float:
    """The lr of batch ``step`` in ``epoch`` (both 0-based) before any plateau reduction."""
    if cfg.name == "onecycle":
        return _onecycle(epoch * steps_per_epoch + step, epochs * steps_per_epoch, base, cfg)
    w = cfg.warmup_epochs
    if epoch < w:  # linear warmup, as torch's LinearLR(start_factor, 1.0, total_iters=w)
        return base * (cfg.warmup_start + (1 - cfg.warmup_start) * epoch / w)
    gamma = cfg.gamma if cfg.gamma is not None else 0.1
    rule = SCHEDULES.get(cfg.name)
    return rule(epoch - w, dataclasses.replace(cfg, gamma=gamma), base, max(1, epochs - w))


def lr_factor(epoch: int, cfg: ScheduleConfig, epochs: int) -> float:
    """Multiplier of the base lr at the start of ``epoch``."""
    return lr_at(epoch, 0, 1.0, cfg, epochs, 1)


@dataclass(frozen=True)
class PlateauState:
    """Reduce-on-plateau state; ``scale`` multiplies the scheduled lr."""

    best: float = math.nan
    bad_epochs: int = 0
    cooldown_left: int = 0
    scale: float = 1.0


def plateau_step(state: PlateauState, value: float, cfg: ScheduleConfig, base_lr: float) -> PlateauState:
    """One epoch of torch's ReduceLROnPlateau (threshold_mode='rel'), as a pure function."""
    mode = resolve_mode(cfg.monitor, cfg.mode)
    best = initial_best(mode) if math.isnan(state.best) else state.best
    bad = state.bad_epochs + 1
    if improved(value, best, mode, rel_delta=cfg.threshold):
        best, bad = value, 0
    cooldown = state.cooldown_left
    if cooldown > 0:
        cooldown, bad = cooldown - 1, 0
    scale = state.scale
    if bad > cfg.patience:
        old = base_lr * scale
        new = max(old * cfg.factor, cfg.min_lr)
        if old - new > 1e-8:
            scale = new / base_lr
        cooldown, bad = cfg.cooldown, 0
    return PlateauState(best, bad, cooldown, scale)


class LrSchedule:
    """The trainer's view of a schedule: ``lr(epoch, step, scale)``, where ``scale`` is the
    reduce-on-plateau multiplier (``PlateauState.scale``, owned by the epoch-end policy).

    ``fn`` (Python API only) replaces the configured rule: any function epoch -> lr multiplier.
    """

    def __init__(self, cfg: ScheduleConfig, base_lr: float, epochs: int, steps_per_epoch: int,
                 fn: Optional[Callable[[int], float]] = None) -> None:
        self.cfg, self.base, self.epochs, self.spe, self.fn = cfg, base_lr, epochs, steps_per_epoch, fn
        self.per_step = fn is None and cfg.name == "onecycle"

    def lr(self, epoch: int, step: int = 0, scale: float = 1.0) -> float:
        if self.fn is not None:
            return self.base * float(self.fn(epoch))
        return lr_at(epoch, step, self.base, self.cfg, self.epochs, self.spe) * scale


def plateau_applies(cfg: ScheduleConfig, epoch: int) -> bool:
    """Whether reduce-on-plateau watches the end of ``epoch`` (0-based): after any warmup."""
    return cfg.name == "plateau" and epoch + 1 >= cfg.warmup_epochs
