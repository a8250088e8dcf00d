"""Schedules equal torch.optim.lr_scheduler; plateau is driven by scripted metrics."""

import math

import pytest
import torch

from tunelab.config import ScheduleConfig
from tunelab.optim.schedules import LrSchedule, PlateauState, lr_at, plateau_applies, plateau_step

BASE, EPOCHS = 0.1, 30


def _torch_epoch_lrs(make_sched, epochs=EPOCHS):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE)
    sched = make_sched(opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def _ours(cfg, epochs=EPOCHS):
    return [lr_at(e, 0, BASE, cfg, epochs, 1) for e in range(epochs)]


S = torch.optim.lr_scheduler
REFERENCES = [
    (ScheduleConfig(name="constant"), lambda o: S.ConstantLR(o, factor=1.0, total_iters=0)),
    (ScheduleConfig(name="step", step_size=7, gamma=0.3), lambda o: S.StepLR(o, 7, 0.3)),
    (ScheduleConfig(name="exponential", gamma=0.9), lambda o: S.ExponentialLR(o, 0.9)),
    (ScheduleConfig(name="cosine", min_lr=1e-3), lambda o: S.CosineAnnealingLR(o, EPOCHS, 1e-3)),
    (ScheduleConfig(name="cosine", warmup_epochs=5, warmup_start=0.2), lambda o: S.SequentialLR(
        o, [S.LinearLR(o, 0.2, 1.0, total_iters=5), S.CosineAnnealingLR(o, EPOCHS - 5)], milestones=[5])),
    (ScheduleConfig(name="step", step_size=4, gamma=0.5, warmup_epochs=3), lambda o: S.SequentialLR(
        o, [S.LinearLR(o, 0.1, 1.0, total_iters=3), S.StepLR(o, 4, 0.5)], milestones=[3])),
]


@pytest.mark.parametrize("cfg,make", REFERENCES, ids=lambda v: getattr(v, "name", ""))
def test_epoch_schedules_match_torch(cfg, make):
    assert _ours(cfg) == pytest.approx(_torch_epoch_lrs(make), rel=1e-9, abs=1e-12)


def test_onecycle_matches_torch_per_step():
    epochs, spe = 6, 11
    cfg = ScheduleConfig(name="onecycle", pct_start=0.25, div_factor=10.0, final_div_factor=100.0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE)
    ref = S.OneCycleLR(opt, max_lr=BASE, epochs=epochs, steps_per_epoch=spe, pct_start=0.25,
                       div_factor=10.0, final_div_factor=100.0, cycle_momentum=False)
    theirs, ours = [], []
    for e in range(epochs):
        for s in range(spe):
            theirs.append(opt.param_groups[0]["lr"])
            ours.append(lr_at(e, s, BASE, cfg, epochs, spe))
            opt.step()
            ref.step()
    assert ours == pytest.approx(theirs, rel=1e-9)


@pytest.mark.parametrize("mode,monitor,sequence", [
    ("min", "val_loss", [1.0, 0.9, 0.9, 0.95, 0.91, 0.9, 0.89, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0]),
    ("max", "val_accuracy", [0.5, 0.6, 0.6, 0.59, 0.61, 0.6, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7, 0.7]),
])
@pytest.mark.parametrize("patience,cooldown", [(0, 0), (1, 0), (2, 1), (1, 3)])
def test_plateau_matches_torch_on_scripted_metrics(mode, monitor, sequence, patience, cooldown):
    cfg = ScheduleConfig(name="plateau", monitor=monitor, mode=mode, factor=0.5, patience=patience,
                         cooldown=cooldown, min_lr=0.004)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE)
    ref = S.ReduceLROnPlateau(opt, mode=mode, factor=0.5, patience=patience, cooldown=cooldown,
                              min_lr=0.004, threshold=cfg.threshold)
    state = PlateauState()
    for value in sequence:
        ref.step(value)
        state = plateau_step(state, value, cfg, BASE)
        assert BASE * state.scale == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)


def test_plateau_reduces_and_respects_floor():
    cfg = ScheduleConfig(name="plateau", patience=0, factor=0.1, min_lr=0.02)
    state = PlateauState()
    for v in [1.0, 1.0, 1.0, 1.0]:
        state = plateau_step(state, v, cfg, BASE)
    assert BASE * state.scale == pytest.approx(0.02)


def test_custom_function_schedule():
    sched = LrSchedule(ScheduleConfig(), BASE, 10, 5, fn=lambda e: 1 / (1 + e))
    assert [sched.lr(e) for e in range(3)] == pytest.approx([0.1, 0.05, 0.1 / 3])


def test_schedule_object_plateau_uses_monitor():
    cfg = ScheduleConfig(name="plateau", monitor="val_accuracy", patience=0)
    sched, state = LrSchedule(cfg, BASE, 10, 5), PlateauState()
    for epoch, acc in enumerate([0.5, 0.5]):
        assert plateau_applies(cfg, epoch)
        state = plateau_step(state, acc, cfg, BASE)
    assert sched.lr(2, 0, state.scale) == pytest.approx(BASE * 0.1)
    assert math.isclose(lr_at(0, 0, 1.0, ScheduleConfig(name="exponential", gamma=None), 5, 1), 1.0)


def test_every_schedule_name_is_accepted_by_the_config():
    from tunelab.config import from_dict
    from tunelab.optim.schedules import SCHEDULES

    assert SCHEDULES.names() == ["constant", "cosine", "exponential", "onecycle", "plateau", "step"]
    for name in SCHEDULES.names():
        assert from_dict({"schedule": {"name": name}}).schedule.name == name
