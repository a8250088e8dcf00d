"""Samplers: grid covers each point once, seeds reproduce, TPE beats random, GP proposes."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import optuna
import pytest

from tunelab.errors import ConfigError
from tunelab.search.coarse_to_fine import CoarseToFineSampler
from tunelab.search.samplers import SAMPLERS, grid_size, grid_space, make_sampler
from tunelab.search.space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)
# the spaces search optimizer.momentum: an optimizer that has one
MOMENTUM = {"optimizer": {"name": "momentum"}}

GRID = {
    "optimizer.lr": {"log_uniform": [1e-4, 1e-2], "points": 3},
    "optimizer.momentum": {"one_minus_log": [0.9, 0.999], "points": 3},
    "model.dropout": {"uniform": [0.0, 0.5], "points": 2},
    "model.hidden": {"choice": [[128], [256, 128]]},
    "training.epochs": {"int": [2, 4]},
    "model.channels.0": {"log_int": [8, 64], "points": 4},
}
SEARCH = {
    "optimizer.lr": {"log_uniform": [1e-5, 1.0]},
    "optimizer.momentum": {"one_minus_log": [0.5, 0.9999]},
    "model.dropout": {"uniform": [0.0, 0.9]},
}


def _objective(space: SearchSpace, fn):
    """An Optuna objective that suggests the whole space and scores the decoded config values."""
    dists = space.optuna_params()
    return lambda trial: fn(space.decode({n: trial._suggest(n, d) for n, d in dists.items()}))


def _shifted_quadratic(v: dict) -> float:
    """Minimum 0 at lr=3e-3, momentum=0.99, dropout=0.2 (in log lr and log(1 - momentum))."""
    return (math.log10(v["optimizer.lr"] / 3e-3) ** 2
            + math.log10((1 - v["optimizer.momentum"]) / 0.01) ** 2 + 4 * (v["model.dropout"] - 0.2) ** 2)


def test_registry_lists_every_sampler():
    assert SAMPLERS.names() == ["coarse-to-fine", "gp", "grid", "pbt", "random", "tpe"]
    with pytest.raises(ConfigError, match=r"--sampler='tpee' is not known; choose one of .*'tpe'"):
        make_sampler("tpee", SearchSpace.from_dict({"base": MOMENTUM, "space": SEARCH}))
    with pytest.raises(ConfigError, match=r"--sampler random does not take option 'rounds'"):
        make_sampler("random", SearchSpace.from_dict({"base": MOMENTUM, "space": SEARCH}), rounds=3)


def test_grid_values_are_spaced_in_each_kinds_transform():
    space = SearchSpace.from_dict({"base": MOMENTUM, "space": GRID})
    values = {k: [d.decode(u) for u in d.optuna_grid(k)] for k, d in space.params.items()}
    assert values["optimizer.lr"] == pytest.approx([1e-4, 1e-3, 1e-2])
    assert values["optimizer.momentum"] == pytest.approx([0.999, 0.99, 0.9])
    assert values["model.dropout"] == [0.0, 0.5]
    assert values["training.epochs"] == [2, 3, 4]
    assert values["model.channels.0"] == [8, 16, 32, 64]
    assert grid_space(space)["model.hidden"] == ["[128]", "[256, 128]"]
    assert grid_size(space) == 3 * 3 * 2 * 2 * 3 * 4


def test_grid_visits_each_combination_exactly_once():
    small = {**GRID, "optimizer.lr": {"log_uniform": [1e-4, 1e-2], "points": 2},
             "optimizer.momentum": {"one_minus_log": [0.9, 0.999], "points": 2},
             "training.epochs": {"int": [2, 3]}, "model.channels.0": {"log_int": [8, 64], "points": 2}}
    space = SearchSpace.from_dict({"base": MOMENTUM, "space": small})  # 64 points, one of each kind
    seen = []
    study = optuna.create_study(sampler=make_sampler("grid", space, seed=0))
    study.optimize(_objective(space, lambda v: seen.append(v) or 0.0), n_trials=grid_size(space))
    tuples = [tuple(json.dumps(v[k]) if isinstance(v[k], list) else round(v[k], 12) for k in GRID)
              for v in seen]
    assert len(tuples) == grid_size(space) == len(set(tuples))
    axes = [[json.dumps(x) if isinstance(x, list) else round(x, 12)
             for x in (d.decode(u) for u in d.optuna_grid(k))] for k, d in space.params.items()]
    assert set(tuples) == set(itertools.product(*axes))


def test_grid_needs_points_for_a_continuous_range():
    space = SearchSpace.from_dict({"base": MOMENTUM, "space": {**GRID, "optimizer.lr": {"log_uniform": [1e-4, 0.1]}}})
    with pytest.raises(ConfigError, match=r"space.optimizer.lr: the grid sampler needs `points: N` "
                                          r"for a continuous range"):
        make_sampler("grid", space)


def _proposals(name: str, seed: int, n: int = 15) -> list[dict]:
    space = SearchSpace.from_dict({"base": MOMENTUM, "space": SEARCH})
    study = optuna.create_study(sampler=make_sampler(name, space, seed))
    study.optimize(_objective(space, _shifted_quadratic), n_trials=n)
    return [t.params for t in study.trials]


@pytest.mark.parametrize("name", ["random", "tpe", "coarse-to-fine"])
def test_same_seed_same_proposals(name):
    first = _proposals(name, seed=3)
    assert first == _proposals(name, seed=3)
    assert first != _proposals(name, seed=4)


def _mean_best(name: str, seeds: range, n_trials: int) -> float:
    space = SearchSpace.from_dict({"base": MOMENTUM, "space": SEARCH})
    bests = []
    for seed in seeds:
        study = optuna.create_study(sampler=make_sampler(name, space, seed))
        study.optimize(_objective(space, _shifted_quadratic), n_trials=n_trials)
        bests.append(study.best_value)
    return float(np.mean(bests))


def test_tpe_beats_random_at_a_fixed_budget():
    tpe, rnd = _mean_best("tpe", range(5), 40), _mean_best("random", range(5), 40)
    assert tpe < 0.5 * rnd, (tpe, rnd)


def test_gp_builds_and_proposes_inside_the_space():
    space = SearchSpace.from_dict({"base": MOMENTUM, "space": {**SEARCH, "model.hidden": {"choice": [[64], [128, 64]]},
                                             "training.epochs": {"log_int": [1, 50]}}})
    sampler = make_sampler("gp", space, seed=0, n_startup_trials=4)
    assert isinstance(sampler, optuna.samplers.GPSampler)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_objective(space, _shifted_quadratic), n_trials=7)  # 3 proposals from the GP
    for trial in study.trials:
        v = space.decode(trial.params)
        assert 1e-5 <= v["optimizer.lr"] <= 1.0 and 0.5 <= v["optimizer.momentum"] <= 0.9999
        assert v["model.hidden"] in ([64], [128, 64]) and 1 <= v["training.epochs"] <= 50
        space.apply(None, v)
    assert len({t.params["optimizer.lr"] for t in study.trials}) == 7


def test_coarse_to_fine_is_registered_with_its_options():
    space = SearchSpace.from_dict({"base": MOMENTUM, "space": SEARCH})
    sampler = make_sampler("coarse-to-fine", space, seed=0, round_size=7, keep=0.5)
    assert isinstance(sampler, CoarseToFineSampler)
    assert (sampler.round_size, sampler.keep, sampler.margin) == (7, 0.5, 0.1)
