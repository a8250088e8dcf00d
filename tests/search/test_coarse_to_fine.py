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

SPACE = SearchSpace.from_dict({"base": {"optimizer": {"name": "momentum"}}, "space": {
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

def _decades_off(key: str, lo: float, hi: float) -> float:
    """How far (decades of x, or of 1 - x) ``BEST[key]`` lies outside [lo, hi]; 0 inside."""
    f = (lambda x: math.log10(x)) if key == "optimizer.lr" else (lambda x: -math.log10(1 - x))
    return max(f(lo) - f(BEST[key]), f(BEST[key]) - f(hi), 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranges_shrink_around_the_optimum_and_never_lose_the_incumbent(seed):
    study = _run(seed, round_size=30)
    rounds = stored_rounds(study)
    assert len(rounds) == 5
    assert rounds[0] == SPACE.to_dict()["space"]
    for key in ("optimizer.lr", "optimizer.momentum"):
        w = _widths(rounds, key)
        assert w[1] < w[0] and w[-1] < 0.2 * w[0], (key, w)
        for r in rounds:  # the optimum is in every range, or a hair outside a late narrow one
            a, b = r[key][SPACE.params[key].kind]
            assert _decades_off(key, a, b) < 0.1, (key, r[key])
    for i, r in enumerate(rounds[1:], 1):  # the best trial before each round lies inside its region
        before = [t for t in study.trials if t.number < 30 * i]
        best = SPACE.decode(max(before, key=lambda t: t.value).params)
        for key, spec in r.items():
            kind, bounds = next(iter(spec.items()))
            assert best[key] in bounds if kind == "choice" else bounds[0] <= best[key] <= bounds[1], (i, key)
    assert BEST["model.hidden"] in rounds[-1]["model.hidden"]["choice"]
    assert len(rounds[-1]["model.hidden"]["choice"]) < 4


def test_final_lr_range_is_centred_on_the_optimum_in_log_space():
    a, b = stored_rounds(_run(0))[-1]["optimizer.lr"]["log_uniform"]
    assert abs(math.log10(math.sqrt(a * b) / 3e-3)) < 0.5  # geometric centre near 3e-3
    assert (a + b) / 2 > 3 * math.sqrt(a * b) or b / a < 10  # not a linear-space box


def test_trials_are_sampled_inside_their_rounds_ranges_but_the_explore_share():
    study = _run(1, rounds=3, round_size=10)
    rounds = stored_rounds(study)
    sampler = study.sampler
    assert [t.number for t in study.trials if sampler.exploring(t.number)] == [19, 29]  # 10% of rounds 1, 2
    for t in study.trials:
        if sampler.exploring(t.number):
            continue
        v, r = SPACE.decode(t.params), rounds[t.number // 10]
        lo, hi = r["optimizer.lr"]["log_uniform"]
        assert lo <= v["optimizer.lr"] <= hi
        lo, hi = r["optimizer.momentum"]["one_minus_log"]
        assert lo - 1e-12 <= v["optimizer.momentum"] <= hi + 1e-12
        assert v["model.hidden"] in r["model.hidden"]["choice"]


# ------------------------------------------------------------------------ round_ranges, pure

def _pair(lr: tuple, mom: tuple, epochs: tuple = (10, 20)) -> list[FrozenTrial]:
    """Six good trials (kept: one more than the five params): two at the given values (the span's
    ends, the best first), four between them; then six bad ones elsewhere."""
    ends = [{"optimizer.lr": lr[i], "optimizer.momentum": mom[i], "model.hidden": [128],
             "model.dropout": 0.2 + 0.1 * i, "training.epochs": epochs[i]} for i in range(2)]
    mid = {"optimizer.lr": math.sqrt(lr[0] * lr[1]), "optimizer.momentum": 1 - math.sqrt((1 - mom[0]) * (1 - mom[1])),
           "model.hidden": [128], "model.dropout": 0.25, "training.epochs": (epochs[0] + epochs[1]) // 2}
    good = [_trial(i, 1.0, ends[i]) for i in range(2)] + [_trial(2 + i, 0.5, mid) for i in range(4)]
    bad = [_trial(6 + i, -1.0, {"optimizer.lr": 0.9, "optimizer.momentum": 0.6, "model.hidden": [64],
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
    assert r["model.hidden"].choices == ([64], [128])  # the kept trials' [128] and the best other tried


def test_direction_chooses_which_trials_are_kept():
    r = round_ranges(SPACE, _pair((1e-4, 1e-2), (0.9, 0.999)), "minimize", 1, 12, keep=0.25)
    assert r["model.hidden"].choices == ([64], [128])  # the six bad trials' [64], and the best other value
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


def test_a_best_trial_at_the_wall_of_its_round_reopens_that_side():
    # round 1's lr range is [1e-4 / 10**0.2, 1e-2 * 10**0.2]; round 1's best trial sits at its top
    trials = _pair((1e-4, 1e-2), (0.9, 0.999))
    r1 = round_ranges(SPACE, trials, "maximize", 1, 8)["optimizer.lr"]
    top = {"optimizer.lr": r1.high, "optimizer.momentum": 0.95, "model.hidden": [128], "model.dropout": 0.25,
           "training.epochs": 15}
    inner = {**top, "optimizer.lr": 3e-3}
    walled = trials + [_trial(8, 2.0, top), _trial(9, 1.5, inner)]
    lr = round_ranges(SPACE, walled, "maximize", 2, 8)["optimizer.lr"]
    width = math.log10(r1.high / r1.low)
    assert math.log10(lr.high / r1.high) == pytest.approx(width / 2)  # half the old width beyond its top
    assert lr.low > 1e-4 / 10 ** 0.3  # the other side is not reopened
    # the same best value from round 0 (drawn in the whole space) ran into no wall
    unwalled = [_trial(t.number, t.value, SPACE.decode(t.params)) for t in trials[2:]] + [
        _trial(0, 2.0, top), _trial(1, 1.5, inner)]
    assert round_ranges(SPACE, unwalled, "maximize", 1, 8)["optimizer.lr"].high < r1.high * 10 ** 0.5


def test_int_ranges_keep_the_incumbents_neighbours_and_choices_keep_two_values():
    space = SearchSpace.from_dict({"space": {"training.epochs": {"int": [1, 10]},
                                             "model.hidden": {"choice": [[64], [128], [32]]}}})
    dists = space.optuna_params()

    def trial(number, value, epochs, hidden):
        return FrozenTrial(number=number, state=TrialState.COMPLETE, value=value, values=None, datetime_start=None,
                           datetime_complete=None, params=space.encode({"training.epochs": epochs, "model.hidden": hidden}),
                           distributions=dists, user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=number)

    same = [trial(i, 1.0 - 0.1 * i, 5, [128]) for i in range(4)] + [trial(4, -1.0, 9, [32]), trial(5, -2.0, 2, [64])]
    r = round_ranges(space, same, "maximize", 1, 8)
    # a collapsed span of 5..5 (MIN_WIDTH of 9 is under one step) still spans 4..6
    assert (r["training.epochs"].low, r["training.epochs"].high) == (4, 6)
    assert r["model.hidden"].choices == ([128], [32])  # the kept value, and the best other one tried


def test_a_configuration_is_not_proposed_twice():
    small = SearchSpace.from_dict({"space": {"training.epochs": {"int": [1, 3]},
                                             "model.hidden": {"choice": [[8], [16], [32]]}}})
    dists = small.optuna_params()
    for seed in range(3):
        study = optuna.create_study(sampler=CoarseToFineSampler(small, round_size=4, seed=seed))
        study.optimize(lambda t: float(sum(len(str(t._suggest(n, d))) for n, d in dists.items())), n_trials=9)
        configs = [tuple(sorted(t.params.items())) for t in study.trials]
        assert len(set(configs[1:])) == 8 and len(set(configs)) >= 8  # the first trial draws alone (no record)


def test_make_sampler_and_tune_pick_the_same_round_size():
    from tunelab.search.coarse_to_fine import auto_round_size
    from tunelab.search.samplers import make_sampler
    from tunelab.search.tune import _plan

    assert make_sampler("coarse-to-fine", SPACE, trials=100).round_size == auto_round_size(100, 5) == 20
    assert make_sampler("coarse-to-fine", SPACE).round_size == 20  # 100 trials when not told
    assert _plan(SPACE, "coarse-to-fine", 100, False, 0, None, 0.25)[0][4]["round_size"] == 20
    assert auto_round_size(40, 9) == 20 and auto_round_size(1000, 3) == 200


def test_a_range_asked_differently_from_the_space_is_sampled_not_clipped():
    space = SearchSpace.from_dict({"space": {"model.dropout": {"uniform": [0.0, 0.5]}}}, validate_config=False)
    study = optuna.create_study(sampler=CoarseToFineSampler(space, round_size=5, seed=0))
    study.optimize(lambda t: t.suggest_float("model.dropout", 20.0, 30.0, step=0.5), n_trials=30)
    xs = [t.params["model.dropout"] for t in study.trials]
    assert all(20.0 <= x <= 30.0 and (x * 2).is_integer() for x in xs)  # on the step grid
    assert len(set(xs)) > 10  # spread over the range, not stuck at 20


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
