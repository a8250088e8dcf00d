"""The epoch-end policy on scripted metrics, no training: divergence, reduce-on-plateau (against
torch's ReduceLROnPlateau), early stopping with the user's on/off switch, the caller's answer."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from tunelab.config import from_dict
from tunelab.trainer.policy import epoch_end, early_stopping_on
from tunelab.trainer.state import RunState


def _metrics(**values):
    base = dict(train_loss=1.0, train_accuracy=0.5, val_loss=1.0, val_accuracy=0.5)
    return {**base, **values}


def _cfg(**sections):
    return from_dict({"optimizer": {"lr": 0.1}, **sections})


# ---------------------------------------------------------------------------- divergence


@pytest.mark.parametrize("key,value", [("train_loss", math.nan), ("val_loss", math.inf),
                                       ("train_loss", -math.inf)])
def test_a_non_finite_loss_diverges_before_anything_else(key, value):
    cfg = _cfg(schedule={"name": "plateau", "patience": 0},
               training={"early_stopping": {"enabled": True, "patience": 0}})
    state = RunState(epoch=2, history=({"epoch": 1}, {"epoch": 2}))
    new, action = epoch_end(state, _metrics(**{key: value}), cfg, answer="stop")
    assert action.stop == "diverged" and not action.best
    assert f"loss became {value} at epoch 3" in action.message and "lower optimizer.lr (now 0.1)" in action.message
    assert new.epoch == 3 and len(new.history) == 3  # the epoch is recorded...
    assert new.plateau == state.plateau and new.early == state.early  # ...but feeds no monitor
    assert state.epoch == 2 and len(state.history) == 2  # the input state is untouched


# ---------------------------------------------------------------------------- reduce-on-plateau


def _scripted(n, seed, mode):
    """A noisy curve that improves, then stalls: several plateaus in a row."""
    rng = np.random.default_rng(seed)
    trend = np.concatenate([np.linspace(1.0, 0.5, n // 2), np.full(n - n // 2, 0.5)])
    values = trend + rng.normal(0, 0.02, n)
    return (values if mode == "min" else 1 - values).tolist()


@pytest.mark.parametrize("schedule,monitor,mode", [
    (dict(patience=2, factor=0.5, threshold=1e-4), "val_loss", "min"),
    (dict(patience=0, factor=0.5, threshold=0.02), "val_loss", "min"),
    (dict(patience=1, factor=0.3, threshold=0.01, cooldown=2), "train_loss", "min"),
    (dict(patience=1, factor=0.5, threshold=1e-3, min_lr=0.004), "val_loss", "min"),
    (dict(patience=1, factor=0.5, threshold=1e-3), "val_accuracy", "max"),
    (dict(patience=1, factor=0.5, threshold=1e-3, mode="max"), "train_loss", "max"),
])
def test_plateau_reduces_like_torch_reduce_lr_on_plateau(schedule, monitor, mode):
    cfg = _cfg(schedule={"name": "plateau", "monitor": monitor, **schedule})
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode=mode, factor=schedule["factor"], patience=schedule["patience"],
        threshold=schedule["threshold"], threshold_mode="rel", cooldown=schedule.get("cooldown", 0),
        min_lr=schedule.get("min_lr", 0.0), eps=1e-8)
    state, scales = RunState(), []
    for value in _scripted(40, seed=0, mode=mode):
        state, action = epoch_end(state, _metrics(**{monitor: value}), cfg)
        ref.step(value)
        assert action.stop is None
        assert 0.1 * state.plateau.scale == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-15)
        scales.append(state.plateau.scale)
    assert len(set(scales)) >= 3  # the script really reduced the lr, more than once


def test_plateau_waits_for_the_warmup_then_reduces_like_torch():
    cfg = _cfg(schedule={"name": "plateau", "patience": 0, "factor": 0.5, "warmup_epochs": 3})
    values = [1.0, 2.0, 3.0, 0.9, 0.95, 0.97, 0.8, 0.85]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=0, threshold=1e-4)
    state = RunState()
    for epoch, value in enumerate(values):
        state, _ = epoch_end(state, _metrics(val_loss=value), cfg)
        if epoch + 1 >= 3:  # the plateau watches the ends of epochs 3, 4, ... (1-based)
            ref.step(value)
        assert 0.1 * state.plateau.scale == pytest.approx(opt.param_groups[0]["lr"])
    assert state.plateau.scale == 0.125


def test_other_schedules_never_touch_the_plateau_state():
    cfg = _cfg(schedule={"name": "cosine"})
    state = RunState()
    for value in [1.0, 2.0, 3.0, 4.0]:
        state, _ = epoch_end(state, _metrics(val_loss=value), cfg)
    assert state.plateau.scale == 1.0 and state.plateau.bad_epochs == 0 and math.isnan(state.plateau.best)


# ---------------------------------------------------------------------------- early stopping


def _run(values, cfg, state=RunState(), switch_at=None, switch=None):
    """Feed val_loss values; returns (state, the 1-based epoch that stopped or None, bests)."""
    bests = []
    for i, value in enumerate(values):
        if switch_at is not None and i == switch_at:
            state = dataclasses.replace(state, early_stopping=switch)
        state, action = epoch_end(state, _metrics(val_loss=value), cfg)
        bests.append(action.best)
        if action.stop:
            assert action.stop == "early_stopped" and action.message == "val_loss did not improve for 2 epochs"
            return state, state.epoch, bests
    return state, None, bests


_WORSE = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99]
_ON = {"early_stopping": {"enabled": True, "patience": 2}}
_OFF = {"early_stopping": {"enabled": False, "patience": 2}}


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    state, stopped, bests = _run(_WORSE, _cfg(training=_ON))
    assert stopped == 4 and bests == [True, True, False, False]
    assert (state.early.best, state.early.best_epoch, state.early.wait) == (0.9, 1, 2)


def test_the_switch_overrides_the_config_both_ways():
    # configured on, switched off: never stops, yet the monitor still tracks the best epoch
    state, stopped, bests = _run(_WORSE, _cfg(training=_ON), RunState(early_stopping=False))
    assert stopped is None and state.epoch == len(_WORSE) and bests[:2] == [True, True]
    assert state.early.best_epoch == 1 and not early_stopping_on(state, _cfg(training=_ON))
    # configured off, switched on: stops exactly as the configured-on run
    state, stopped, _ = _run(_WORSE, _cfg(training=_OFF), RunState(early_stopping=True))
    assert stopped == 4 and early_stopping_on(state, _cfg(training=_OFF))
    # configured off, not switched: never stops
    assert _run(_WORSE, _cfg(training=_OFF))[1] is None


def test_switching_on_late_stops_at_the_next_epoch_end_when_patience_ran_out():
    # off while the wait grows to 3 (epochs 3-5); on again before epoch 6: stops at its end
    state, stopped, _ = _run(_WORSE, _cfg(training=_ON), RunState(early_stopping=False), switch_at=5, switch=True)
    assert stopped == 6 and state.early.wait == 4


# ---------------------------------------------------------------------------- the caller's answer


def test_the_callers_stop_ends_the_run_and_reports_a_best_epoch():
    cfg = _cfg()
    state, action = epoch_end(RunState(), _metrics(val_loss=0.5), cfg, answer="stop")
    assert (action.stop, action.message, action.best) == ("stopped", "stopped by the caller", True)
    state, action = epoch_end(state, _metrics(val_loss=0.6), cfg, answer="stop")
    assert (action.stop, action.best) == ("stopped", False)
    for answer in (None, "continue"):
        _, action = epoch_end(state, _metrics(val_loss=0.6), cfg, answer=answer)
        assert action.stop is None


def test_early_stopping_takes_precedence_over_the_callers_stop():
    state = RunState()
    cfg = _cfg(training={"early_stopping": {"enabled": True, "patience": 1}})
    state, _ = epoch_end(state, _metrics(val_loss=0.5), cfg)
    state, action = epoch_end(state, _metrics(val_loss=0.6), cfg, answer="stop")
    assert action.stop == "early_stopped"


def test_epoch_end_records_the_epoch_and_resets_the_step():
    metrics = _metrics(val_loss=0.4, epoch=1, lr=0.1)
    state, _ = epoch_end(RunState(step=13), metrics, _cfg())
    assert (state.epoch, state.step) == (1, 0) and state.history == (metrics,)
    metrics["val_loss"] = 99.0
    assert state.history[0]["val_loss"] == 0.4  # a copy, not the caller's dict
