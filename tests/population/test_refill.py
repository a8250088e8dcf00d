"""Refill: members that leave a stack are replaced at the next epoch boundary by new configs of its
bucket, which train exactly as they would in a fresh stack (their own weights, order and streams)."""

import math

import pytest

from tunelab.config import from_dict
from tunelab.population import train_population


def cfg(epochs, lr, seed, *more):
    if epochs is None:
        return from_dict({"model": {"hidden": [16]}, "optimizer": {"lr": lr}},
                         [f"training.seed={seed}", "training.threads=1", *more])
    return from_dict({"model": {"hidden": [16]}, "optimizer": {"lr": lr}},
                     [f"training.epochs={epochs}", f"training.seed={seed}", "training.threads=1", *more])


def _queue(cfgs):
    """refill(free) serving ``cfgs`` in order; records each call's free slots."""
    left, calls = list(cfgs), []

    def refill(free):
        calls.append(free)
        out = left[:free]
        del left[:free]
        return out

    return refill, calls


@pytest.mark.parametrize("more", [[], ["model.dropout=0.3", "optimizer.name=momentum", "optimizer.lr=0.05"]])
def test_a_refilled_member_equals_the_same_trial_in_a_fresh_stack(more):
    late = cfg(3, 3e-3, 7, *more)
    refill, calls = _queue([late])
    results = train_population([cfg(2, 1e-3, 0, *more), cfg(4, 1e-2, 1, *more)], refill=refill)
    assert [r.epochs_run for r in results] == [2, 4, 3] and calls[0] == 1  # it joined when member 0 left
    alone = train_population([late])[0]
    first, ref = results[2].history[0], alone.history[0]
    assert first["epoch"] == 1 and first["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-6)
    for a, b in zip(results[2].history, alone.history):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4, abs=1e-6)
    assert results[2].test_accuracy == pytest.approx(alone.test_accuracy, abs=1 / 359 + 1e-9)


def test_refill_keeps_the_stack_full_until_the_configs_run_out():
    later = [cfg(e, 1e-3, 10 + i) for i, e in enumerate([1, 2, 1, 3])]
    refill, calls = _queue(later)
    stats = {}
    results = train_population([cfg(1, 1e-3, 0), cfg(2, 1e-3, 1), cfg(3, 1e-3, 2)], refill=refill, capacity=3,
                               stats=stats)
    assert [r.status for r in results] == ["completed"] * 7 and stats["refilled"] == 4
    # members per epoch of the 3 slots: 3, 3, 3 while refills last, then 2, 1, 1 as the stack drains
    steps = math.ceil(1294 / 128)  # digits' 1294 training examples at the default batch 128: one epoch
    assert stats["member_steps"] == (3 + 3 + 3 + 2 + 1 + 1) * steps and stats["slot_steps"] == 3 * 6 * steps
    assert calls[:3] == [1, 2, 2]  # the free slots at each boundary where members left


def test_refill_with_a_config_of_another_bucket_is_refused():
    refill, _ = _queue([cfg(2, 1e-3, 5, "training.batch_size=32")])
    with pytest.raises(ValueError, match="bucket"):
        train_population([cfg(1, 1e-3, 0), cfg(2, 1e-3, 1)], refill=refill)


def test_a_stack_whose_period_is_not_one_pass_drains_without_refill():
    steps = ["training.steps=30", "training.eval_every=10"]  # 10 steps: half a pass of 21
    refill, calls = _queue([cfg(None, 1e-3, 5, *steps)])
    stats = {}
    cfgs = [from_dict({}, [*steps, f"training.seed={s}", "training.threads=1"]) for s in (0, 1)]
    results = train_population(cfgs, refill=refill, stats=stats)
    assert len(results) == 2 and calls == [] and stats["unrefillable"] == 1


def test_refill_and_population_based_training_exclude_each_other():
    from tunelab.population.pbt import PBTConfig
    from tunelab.search.distributions import parse_dist

    pbt = PBTConfig({"optimizer.lr": parse_dist("optimizer.lr", {"log_uniform": [1e-4, 1e-1]})})
    with pytest.raises(ValueError, match="population-based"):
        train_population([cfg(2, 1e-3, 0), cfg(2, 1e-2, 1)], refill=lambda free: [], pbt=pbt)
