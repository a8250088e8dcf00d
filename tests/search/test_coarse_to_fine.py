"""Coarse-to-fine: ranges shrink around the optimum, in each kind's transform, stored per round."""

from __future__ import annotations

import math
import random

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from tunelab.errors import ConfigError
from tunelab.search.coarse_to_fine import MIN_WIDTH, CoarseToFineSampler, round_ranges, stored_rounds
from tunelab.search.space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = SearchSpace.from_dict({"space": {
    "optimizer.lr": {"log_uniform": [1e-5, 1.0]},
    "optimizer.momentum": {"one_minus_log": [0.5, 0.9999]},
    "model.hidden": {"choice": [[64], [128], [256, 128], [32]]},
    "model.dropout": {"uniform": [0.0, 0.8]},
    "training.epochs": {"int": [1, 100]},
}})
BEST = {"optimizer.lr": 3e-3, "optimizer.momentum": 0.99, "model.hidden": [128]}


def _score(v: dict) -> float:
    """Peak 0 at lr=3e-3, momentum=0.99, hidden=[128]: quadratic in log lr and log(1 - momentum).

    model.dropout and training.epochs do not matter: their ranges drift, and are not checked.
    """
    return -(math.log10(v["optimizer.lr"] / 3e-3) ** 2 + math.log10((1 - v["optimizer.momentum"]) / 0.01) ** 2
             + (0.0 if v["model.hidden"] == [128] else 2.0))


def _run(seed: int, rounds: int = 5, round_size: int = 20) -> optuna.Study:
    study = optuna.create_study(direction="maximize",
                                sampler=CoarseToFineSampler(SPACE, round_size=round_size, seed=seed))
    dists = SPACE.optuna_params()
    study.optimize(lambda t: _score(SPACE.decode({n: t._suggest(n, d) for n, d in dists.items()})),
                   n_trials=rounds * round_size)
    return study


def _widths(rounds: list[dict], key: str) -> list[float]:
    """Width of each round's range of ``key`` in its transform (decades of x or of 1 - x)."""
    kind = SPACE.params[key].kind
    out = []
    for r in rounds:
        a, b = r[key][kind]
        out.append(math.log10((1 - a) / (1 - b)) if kind == "one_minus_log" else
                   math.log10(b / a) if kind == "log_uniform" else b - a)
    return out


def _trial(number: int, value: float | None, values: dict, state=TrialState.COMPLETE) -> FrozenTrial:
    dists = SPACE.optuna_params(list(values))
    return FrozenTrial(number=number, state=state, value=value, values=None, datetime_start=None,
                       datetime_complete=None, params=SPACE.encode(values), distributions=dists,
                       user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=number)


# ------------------------------------------------------------------------ whole studies

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranges_shrink_and_keep_the_optimum(seed):
    # 30 a round keeps 8 trials; with 5 (round_size 20) about a third of seeds let the optimum
    # fall just outside some late round's range (the loss there is tiny, but the check is strict)
    rounds = stored_rounds(_run(seed, round_size=30))
    assert len(rounds) == 5
    assert rounds[0] == SPACE.to_dict()["space"]
    for key in ("optimizer.lr", "optimizer.momentum"):
        w = _widths(rounds, key)
        assert w[1] < w[0] and w[-1] < 0.2 * w[0], (key, w)
        assert all(b <= 1.1 * a for a, b in zip(w, w[1:])), (key, w)
        for r in rounds:
            a, b = r[key][SPACE.params[key].kind]
            assert a <= BEST[key] <= b, (key, r[key])
    for r in rounds:
        assert BEST["model.hidden"] in r["model.hidden"]["choice"]
    assert len(rounds[-1]["model.hidden"]["choice"]) < 4


def test_final_lr_range_is_centred_on_the_optimum_in_log_space():
    a, b = stored_rounds(_run(0))[-1]["optimizer.lr"]["log_uniform"]
    assert abs(math.log10(math.sqrt(a * b) / 3e-3)) < 0.5  # geometric centre near 3e-3
    assert (a + b) / 2 > 3 * math.sqrt(a * b) or b / a < 10  # not a linear-space box


def test_trials_are_sampled_inside_their_rounds_ranges():
    study = _run(1, rounds=3, round_size=10)
    rounds = stored_rounds(study)
    for t in study.trials:
        v, r = SPACE.decode(t.params), rounds[t.number // 10]
        lo, hi = r["optimizer.lr"]["log_uniform"]
        assert lo <= v["optimizer.lr"] <= hi
        lo, hi = r["optimizer.momentum"]["one_minus_log"]
        assert lo - 1e-12 <= v["optimizer.momentum"] <= hi + 1e-12
        assert v["model.hidden"] in r["model.hidden"]["choice"]


# ------------------------------------------------------------------------ round_ranges, pure

def _pair(lr: tuple, mom: tuple, epochs: tuple = (10, 20)) -> list[FrozenTrial]:
    """Two good trials (kept) with the given values, then six bad ones elsewhere."""
    good = [_trial(i, 1.0, {"optimizer.lr": lr[i], "optimizer.momentum": mom[i], "model.hidden": [128],
                            "model.dropout": 0.2 + 0.1 * i, "training.epochs": epochs[i]}) for i in range(2)]
    bad = [_trial(2 + i, -1.0, {"optimizer.lr": 0.9, "optimizer.momentum": 0.6, "model.hidden": [64],
                                "model.dropout": 0.7, "training.epochs": 90}) for i in range(6)]
    return good + bad


def test_numeric_ranges_narrow_in_each_kinds_transform():
    r = round_ranges(SPACE, _pair((1e-4, 1e-2), (0.9, 0.999)), "maximize", 1, 8, keep=0.25, margin=0.1)
    lr = r["optimizer.lr"]  # logs: span 2 decades, margin 0.2 decades on each side
    assert (lr.low, lr.high) == pytest.approx((1e-4 / 10 ** 0.2, 1e-2 * 10 ** 0.2))
    m = r["optimizer.momentum"]  # log(1 - x): span 2 decades of 1 - x
    assert (m.low, m.high) == pytest.approx((1 - 0.1 * 10 ** 0.2, 1 - 0.001 / 10 ** 0.2))
    d = r["model.dropout"]  # linear: [0.2, 0.3] plus 0.01, but at least MIN_WIDTH of 0.8 wide
    assert (d.low, d.high) == pytest.approx((0.2 - 0.01, 0.3 + 0.01))
    assert (r["training.epochs"].low, r["training.epochs"].high) == (9, 21)  # 10..20 +- 1, rounded out
    assert r["model.hidden"].choices == ([128],)


def test_direction_chooses_which_trials_are_kept():
    r = round_ranges(SPACE, _pair((1e-4, 1e-2), (0.9, 0.999)), "minimize", 1, 8, keep=0.25)
    assert r["model.hidden"].choices == ([64],)
    assert r["optimizer.lr"].high == 1.0  # clipped to the original range
    assert r["optimizer.lr"].low == pytest.approx(0.9 * 10 ** (-MIN_WIDTH * 5 / 2))  # a collapsed span


def test_collapsed_span_keeps_a_minimum_width():
    r = round_ranges(SPACE, _pair((1e-3, 1e-3), (0.99, 0.99)), "maximize", 1, 8)
    lr = r["optimizer.lr"]
    assert math.log10(lr.high / lr.low) == pytest.approx(MIN_WIDTH * 5)
    assert math.sqrt(lr.low * lr.high) == pytest.approx(1e-3)


def test_round_ranges_is_a_pure_function_of_the_records():
    trials = _run(2, rounds=3, round_size=10).trials
    first = round_ranges(SPACE, trials, "maximize", 2, 10)
    shuffled = list(trials)
    random.Random(0).shuffle(shuffled)
    assert round_ranges(SPACE, shuffled, optuna.study.StudyDirection.MAXIMIZE, 2, 10) == first
    assert round_ranges(SPACE, trials, "maximize", 1, 10) != first


def test_too_few_trials_fall_back_to_the_previous_ranges():
    trials = _pair((1e-4, 1e-2), (0.9, 0.999))
    assert round_ranges(SPACE, trials[:1], "maximize", 1, 8) == SPACE.params  # one trial: nothing to span
    failed = [_trial(t.number, None, SPACE.decode(t.params), TrialState.FAIL) for t in trials]
    assert round_ranges(SPACE, failed, "maximize", 1, 8) == SPACE.params
    later = [_trial(t.number + 8, t.value, SPACE.decode(t.params)) for t in trials]
    assert round_ranges(SPACE, later, "maximize", 1, 8) == SPACE.params  # trials of round 1 itself
    r1 = round_ranges(SPACE, trials, "maximize", 1, 8)
    assert round_ranges(SPACE, trials, "maximize", 2, 8) == r1  # nothing new since round 1


# ------------------------------------------------------------------------ the sampler

def test_stored_ranges_are_shared_by_every_sampler_of_the_study():
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("c2f_round_0", {"optimizer.lr": {"log_uniform": [1e-3, 2e-3]}})
    study.sampler = CoarseToFineSampler(SPACE, round_size=50, seed=0)
    for _ in range(20):
        trial = study.ask()
        lr = trial.suggest_float("optimizer.lr", 1e-5, 1.0, log=True)
        assert 1e-3 <= lr <= 2e-3
        study.tell(trial, 0.0)
    assert stored_rounds(study) == [{"optimizer.lr": {"log_uniform": [1e-3, 2e-3]}}]


def test_unknown_params_fall_back_to_random_sampling():
    study = optuna.create_study(sampler=CoarseToFineSampler(SPACE, round_size=5, seed=0))
    study.optimize(lambda t: t.suggest_float("other", -1, 1) + t.suggest_int("optimizer.lr", 0, 3),
                   n_trials=10)
    assert all(-1 <= t.params["other"] <= 1 and 0 <= t.params["optimizer.lr"] <= 3 for t in study.trials)


@pytest.mark.parametrize("kwargs, part", [({"round_size": 0}, "round_size=0"), ({"keep": 0.0}, "keep=0.0"),
                                          ({"keep": 1.5}, "keep=1.5"), ({"margin": -0.1}, "margin=-0.1")])
def test_bad_arguments_are_config_errors(kwargs, part):
    with pytest.raises(ConfigError, match=part):
        CoarseToFineSampler(SPACE, **{"round_size": 10, **kwargs})
