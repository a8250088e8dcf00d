"""Optimizers by name (torch.optim) and learning-rate schedules (pure rules + plateau state)."""

from tunelab.optim.optimizers import OPTIMIZERS, build_optimizer, default_eps, default_lr
from tunelab.optim.schedules import (
    SCHEDULES,
    LrSchedule,
    PlateauState,
    lr_factor,
    plateau_applies,
    plateau_step,
)

__all__ = [
    "OPTIMIZERS", "build_optimizer", "default_eps", "default_lr",
    "SCHEDULES", "LrSchedule", "PlateauState", "lr_factor", "plateau_step",
    "plateau_applies",
]
