"""Early stopping driven by scripted metric sequences, with no training."""

import pytest

from tunelab.config import EarlyStoppingConfig
from tunelab.trainer.callbacks import EarlyStopState, early_stop_step


def _run(values, **kw):
    cfg = EarlyStoppingConfig(enabled=True, **kw)
    state, stopped_at = EarlyStopState(), None
    for epoch, v in enumerate(values):
        state = early_stop_step(state, epoch, v, cfg)
        if state.stop:
            stopped_at = epoch
            break
    return state, stopped_at


def test_stops_after_patience_epochs_without_improvement():
    state, stopped = _run([1.0, 0.8, 0.7, 0.75, 0.72, 0.71, 0.5], patience=3)
    assert stopped == 5 and state.best_epoch == 2 and state.best == 0.7


def test_improvement_resets_the_wait():
    _, stopped = _run([1.0, 0.9, 0.95, 0.85, 0.9, 0.8, 0.9, 0.7], patience=2)
    assert stopped is None


def test_min_delta_ignores_tiny_improvements():
    state, stopped = _run([1.0, 0.999, 0.998, 0.997], patience=2, min_delta=0.01)
    assert stopped == 2 and state.best_epoch == 0


@pytest.mark.parametrize("monitor,values,best_epoch", [
    ("val_accuracy", [0.5, 0.7, 0.6, 0.65, 0.69], 1),  # auto mode is max for accuracy
    ("val_loss", [0.5, 0.7, 0.6, 0.65, 0.69], 0),      # and min for loss
])
def test_auto_mode_follows_the_metric(monitor, values, best_epoch):
    state, stopped = _run(values, monitor=monitor, patience=3)
    assert state.best_epoch == best_epoch and stopped == best_epoch + 3


def test_explicit_mode_and_nan_never_improves():
    state, _ = _run([0.5, float("nan"), 0.4], monitor="val_loss", mode="max", patience=5)
    assert state.best == 0.5


def test_disabled_tracks_best_but_never_stops():
    cfg = EarlyStoppingConfig(enabled=False, patience=0)
    state = EarlyStopState()
    for epoch, v in enumerate([1.0, 2.0, 3.0, 0.5]):
        state = early_stop_step(state, epoch, v, cfg)
        assert not state.stop
    assert state.best_epoch == 3 and state.improved
