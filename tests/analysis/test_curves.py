"""warnings_for: the dashboard's warnings from scripted histories (no training)."""

import math

import pytest

from tunelab.analysis.curves import warnings_for


def _history(train, val, acc=None):
    acc = acc or [0.5] * len(train)
    return [dict(epoch=i + 1, train_loss=t, val_loss=v, train_accuracy=a, val_accuracy=a)
            for i, (t, v, a) in enumerate(zip(train, val, acc))]


def test_a_healthy_run_has_no_warnings():
    train = [1.0, 0.7, 0.5, 0.4, 0.35, 0.3]
    assert warnings_for(_history(train, [x + 0.05 for x in train])) == []
    assert warnings_for([]) == []


def test_over_fitting_names_the_epoch_the_validation_loss_starts_rising():
    train = [1.0, 0.8, 0.6, 0.5, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15]
    val = [1.0, 0.8, 0.7, 0.6, 0.55, 0.5, 0.6, 0.7, 0.8, 0.9]  # lowest at epoch 6
    assert warnings_for(_history(train, val), patience=0) == [
        "validation loss rising while train loss falls: over-fitting from epoch 7 "
        "(lowest validation loss 0.5 at epoch 6)"]


@pytest.mark.parametrize("val,why", [
    ([1.0, 0.8, 0.7, 0.6, 0.55, 0.5, 0.6, 0.7], "two epochs above the minimum are not yet a trend"),
    ([1.0, 0.8, 0.7, 0.6, 0.55, 0.5, 0.6, 0.51, 0.6], "one of the last three is within the noise margin"),
])
def test_a_short_or_noisy_rise_is_no_over_fitting(val, why):
    train = [1.0 - 0.1 * i for i in range(len(val))]
    assert warnings_for(_history(train, val), patience=0) == [], why


def test_rising_validation_loss_with_rising_train_loss_is_no_over_fitting():
    train = [1.0, 0.8, 0.6, 0.5, 0.55, 0.6, 0.65]  # both rise: a bad lr, not over-fitting
    val = [1.0, 0.8, 0.7, 0.6, 0.7, 0.8, 0.9]
    assert not any("over-fitting" in w for w in warnings_for(_history(train, val), patience=0))


def test_a_non_finite_loss_is_the_only_warning():
    h = _history([1.0, 0.5, math.nan, 0.4], [1.0, 0.5, 0.4, math.inf])
    assert warnings_for(h) == ["loss exploding: train loss is nan at epoch 3"]
    h = _history([1.0, 0.5], [1.0, math.inf])
    assert warnings_for(h) == ["loss exploding: val loss is inf at epoch 2"]


def test_a_train_loss_grown_past_twice_its_lowest_is_exploding():
    h = _history([1.0, 0.4, 0.3, 0.7], [1.0, 0.45, 0.35, 0.5])
    assert warnings_for(h) == ["loss exploding: train loss grew from 0.3 at epoch 3 to 0.7 at epoch 4"]
    h = _history([1.0, 0.4, 0.3, 0.55], [1.0, 0.45, 0.35, 0.5])  # grown, but less than twice
    assert warnings_for(h) == []


def test_no_improvement_counts_the_epochs_since_the_best_of_the_monitor():
    train = [1.0 - 0.05 * i for i in range(9)]
    val = [1.0, 0.6, 0.61, 0.62, 0.6, 0.63, 0.61, 0.62, 0.6]  # best 0.6 at epoch 2; ties are no improvement
    assert warnings_for(_history(train, val), patience=5, rise=1.0) == [
        "no improvement for 7 epochs (best val_loss 0.6 at epoch 2)"]
    assert warnings_for(_history(train, val), patience=8, rise=1.0) == []
    assert warnings_for(_history(train, val), patience=0, rise=1.0) == []  # patience 0: off


def test_no_improvement_follows_the_monitor_and_min_delta():
    acc = [0.5, 0.8, 0.81, 0.805, 0.808, 0.81]  # max mode; +0.01 is not > min_delta 0.02
    h = _history([1.0 - 0.1 * i for i in range(6)], [1.0 - 0.1 * i for i in range(6)], acc)
    assert warnings_for(h, patience=4, monitor="val_accuracy") == []  # 0.81 at epoch 3 was an improvement
    assert warnings_for(h, patience=4, monitor="val_accuracy", min_delta=0.02) == [
        "no improvement for 4 epochs (best val_accuracy 0.8 at epoch 2)"]
