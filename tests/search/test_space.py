"""SearchSpace: loading, validation messages, apply, Optuna round trips, sampling statistics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from scipy import stats

from tunelab.errors import ConfigError
from tunelab.search.distributions import parse_dist
from tunelab.search.space import SearchSpace

# the spaces search optimizer.momentum: an optimizer that has one
MOMENTUM = {"optimizer": {"name": "momentum"}}
FULL = {
    "optimizer.lr": {"log_uniform": [1e-4, 1e-1]},
    "optimizer.momentum": {"one_minus_log": [0.9, 0.999]},
    "model.dropout": {"uniform": [0.0, 0.5]},
    "training.batch_size": {"choice": [32, 64, 128]},
    "model.hidden": {"choice": [[128], [256, 128], [512, 256, 128]]},
    "training.epochs": {"int": [5, 20]},
    "model.channels.0": {"log_int": [8, 64]},
    "optimizer.betas.1": {"one_minus_log": [0.99, 0.9999]},
}


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ------------------------------------------------------------------------ loading

def test_base_path_is_relative_to_the_space_file(tmp_path, monkeypatch):
    _write(tmp_path / "spaces" / "base.yaml", {"optimizer": {"name": "nesterov"}, "training": {"epochs": 7}})
    space_file = _write(tmp_path / "spaces" / "s.yaml", {"base": "base.yaml", "space": FULL})
    monkeypatch.chdir(tmp_path)  # cwd holds no base.yaml: it must be found beside the space file
    space = SearchSpace.load(space_file)
    assert space.base == {"optimizer": {"name": "nesterov"}, "training": {"epochs": 7}}
    assert list(space.params) == list(FULL)
    assert space.stages == [list(FULL)]


def test_base_path_falls_back_to_cwd(tmp_path, monkeypatch):
    _write(tmp_path / "configs" / "b.yaml", {"training": {"epochs": 3}})
    space_file = _write(tmp_path / "spaces" / "s.yaml",
                        {"base": "configs/b.yaml", "space": {"model.dropout": {"uniform": [0, 0.5]}}})
    monkeypatch.chdir(tmp_path)
    assert SearchSpace.load(space_file).base == {"training": {"epochs": 3}}


def test_missing_base_file_names_the_places_looked(tmp_path):
    with pytest.raises(ConfigError, match=r"base='nope.yaml' does not exist"):
        SearchSpace.from_dict({"base": "nope.yaml", "space": FULL}, tmp_path)


def test_inline_base_and_default_objective():
    space = SearchSpace.from_dict({"base": {"optimizer": {"name": "momentum"}}, "space": FULL})
    assert space.base == {"optimizer": {"name": "momentum"}}
    assert (space.objective_metric, space.direction) == ("val_accuracy", "maximize")


def test_loss_objective_defaults_to_minimize():
    space = SearchSpace.from_dict({"base": MOMENTUM, "objective": {"metric": "val_loss"}, "space": FULL})
    assert (space.objective_metric, space.direction) == ("val_loss", "minimize")


def test_stages_are_kept_in_order():
    stages = [["optimizer.lr"], ["optimizer.momentum", "model.hidden", "training.batch_size"],
              ["model.dropout", "training.epochs", "model.channels.0", "optimizer.betas.1"]]
    assert SearchSpace.from_dict({"base": MOMENTUM, "space": FULL, "stages": stages}).stages == stages


def test_invalid_base_is_rejected_at_load():
    with pytest.raises(ConfigError, match=r"base: optimizer.lrr is not a config key"):
        SearchSpace.from_dict({"base": {"optimizer": {"lrr": 1}}, "space": FULL})


def test_free_form_space_skips_config_checks():
    space = SearchSpace.from_dict({"base": {"net": {"widths": [4, 8]}},
                                   "objective": {"metric": "score"},
                                   "space": {"net.widths.1": {"int": [1, 3]}, "x.y": {"uniform": [-1, 1]}}},
                                  validate_config=False)
    assert space.apply(None, {"net.widths.1": 2, "x.y": 0.5}) == {"net": {"widths": [4, 2]}, "x": {"y": 0.5}}
    with pytest.raises(ConfigError, match=r"space.x.y: uniform range \[1, -1\] is empty"):
        SearchSpace.from_dict({"base": MOMENTUM, "space": {"x.y": {"uniform": [1, -1]}}}, validate_config=False)


def _one(key: str, spec: dict) -> dict:
    return {"space": {key: spec}}


BAD = [
    ({"spaces": FULL}, ["'spaces'", "allowed"]),
    (_one("optimizer.lr", {"loguniform": [1e-4, 0.1]}), ["optimizer.lr", "'loguniform'", "log_uniform"]),
    (_one("optimizer.lr", {"uniform": [0.1]}), ["optimizer.lr", "[0.1]"]),
    (_one("training.epochs", {"int": [1.5, 3]}), ["training.epochs", "[1.5, 3]"]),
    (_one("optimizer.lr", {"log_uniform": ["fast", 0.1]}), ["optimizer.lr", "'fast'"]),
    (_one("model.dropout", {"uniform": [0.3, 0.1]}), ["model.dropout", "[0.3, 0.1]", "empty"]),
    (_one("training.epochs", {"int": [5, 4]}), ["training.epochs", "[5, 4]", "empty"]),
    (_one("optimizer.lr", {"log_uniform": [0, 0.1]}), ["optimizer.lr", "[0, 0.1]", "touches 0"]),
    (_one("optimizer.lr", {"log_uniform": [-1e-3, 0.1]}), ["optimizer.lr", "[-0.001, 0.1]", "crosses 0"]),
    (_one("optimizer.momentum", {"one_minus_log": [0.9, 1.0]}), ["optimizer.momentum", "[0.9, 1.0]", "[0, 1)"]),
    (_one("optimizer.momentum", {"one_minus_log": [-0.1, 0.5]}), ["optimizer.momentum", "[-0.1, 0.5]"]),
    (_one("model.kernel_size", {"log_int": [0, 8]}), ["model.kernel_size", "[0, 8]"]),
    (_one("training.batch_size", {"choice": []}), ["training.batch_size", "[]", "non-empty"]),
    (_one("optimizer.lr", {"log_uniform": [1e-4, 0.1], "points": 1}), ["optimizer.lr", "points=1"]),
    (_one("optimizer.lrr", {"log_uniform": [1e-4, 0.1]}), ["optimizer.lrr", "'lrr'", "not a config key"]),
    (_one("optimizer.lr.0", {"uniform": [0.1, 0.2]}), ["optimizer.lr.0", "is a value"]),
    (_one("model.channels.5", {"int": [1, 4]}), ["model.channels.5", "'5'"]),
    (_one("model.hidden", {"choice": [[128], "wide"]}), ["model.hidden", "'wide'"]),
    (_one("model.dropout", {"uniform": [0, 1.5]}), ["model.dropout", "1.5", "out of range"]),
    (_one("training.epochs", {"uniform": [5, 20]}), ["training.epochs", "5.0", "wrong type"]),
    (_one("optimizer.name", {"choice": ["adam", "adamm"]}), ["optimizer.name", "'adamm'"]),
    ({"base": MOMENTUM, "space": FULL, "stages": [list(FULL) + ["model.depth"]]}, ["stages[0]", "'model.depth'"]),
    ({"base": MOMENTUM, "space": FULL, "stages": [list(FULL)[1:]]}, ["stages", "'optimizer.lr'", "no stage"]),
    ({"base": MOMENTUM, "space": FULL, "stages": [list(FULL), ["optimizer.lr"]]}, ["stages[1]", "'optimizer.lr'", "already"]),
    ({"space": FULL, "objective": {"metric": "test_accuracy"}}, ["objective.metric", "'test_accuracy'",
                                                                 "never the objective"]),
    ({"space": FULL, "objective": {"metric": "val_acc"}}, ["objective.metric", "'val_acc'", "val_accuracy"]),
    ({"space": FULL, "objective": {"direction": "up"}}, ["objective.direction", "'up'"]),
    ({"space": FULL, "objective": {"metric": "val_loss", "direction": "maximize"}},
     ["objective.direction", "'maximize'", "val_loss"]),
    ({"space": {"model.hidden": {"choice": [[128]]}, "model.hidden.0": {"int": [1, 4]}}},
     ["model.hidden.0", "model.hidden"]),
]


@pytest.mark.parametrize("raw, parts", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_space_files_name_the_key_and_the_value(raw, parts):
    with pytest.raises(ConfigError) as info:
        SearchSpace.from_dict(raw)
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)


def test_yaml_number_strings_are_read_as_numbers(tmp_path):
    # PyYAML reads 1e-4 (no dot) as a string; the space accepts it as a number
    path = tmp_path / "s.yaml"
    path.write_text("space:\n  optimizer.lr: {log_uniform: [1e-4, 1e-1]}\n")
    dist = SearchSpace.load(path).params["optimizer.lr"]
    assert (dist.low, dist.high) == (1e-4, 0.1)


# ------------------------------------------------------------------------ apply

def test_apply_sets_nested_keys_and_list_indices():
    space = SearchSpace.from_dict({"base": {"model": {"name": "cnn"}, **MOMENTUM}, "space": FULL})
    out = space.apply(space.base, {"optimizer.lr": 0.01, "model.channels.0": 48, "optimizer.betas.1": 0.99,
                                   "model.hidden": [512, 256, 128], "training.epochs": 9})
    assert out["optimizer"]["lr"] == 0.01 and out["optimizer"]["betas"] == [0.9, 0.99]
    assert out["model"]["channels"] == [48, 32] and out["model"]["name"] == "cnn"
    assert out["model"]["hidden"] == [512, 256, 128] and out["training"]["epochs"] == 9
    assert out["optimizer"]["eps"] is not None  # resolved: every default is explicit
    assert space.base == {"model": {"name": "cnn"}, **MOMENTUM}  # the base is not modified


def test_apply_resolves_defaults_after_the_searched_keys():
    space = SearchSpace.from_dict({"base": {"optimizer": {"name": "sgd"}},
                                   "space": {"optimizer.name": {"choice": ["sgd", "adam"]}}})
    sgd, adam = (space.apply(None, {"optimizer.name": n})["optimizer"]["lr"] for n in ("sgd", "adam"))
    assert sgd != adam  # each optimizer gets its own default lr, not the base's resolved one


def test_apply_validates_the_combination():
    space = SearchSpace.from_dict({"base": MOMENTUM, "space": {"schedule.warmup_epochs": {"int": [0, 4]},
                                             "training.epochs": {"int": [2, 10]}}})
    assert space.apply(None, {"schedule.warmup_epochs": 4, "training.epochs": 10})["training"]["epochs"] == 10
    with pytest.raises(ConfigError, match="warmup_epochs=4 must be less than training.epochs=2"):
        space.apply(None, {"schedule.warmup_epochs": 4, "training.epochs": 2})


# ------------------------------------------------------------------------ Optuna round trips

def test_optuna_distributions_of_every_kind():
    d = SearchSpace.from_dict({"base": MOMENTUM, "space": FULL}).optuna_params()
    assert d["optimizer.lr"] == optuna.distributions.FloatDistribution(1e-4, 0.1, log=True)
    assert "optimizer.momentum" not in d
    one = d["1-optimizer.momentum"]
    assert one.log and math.isclose(one.low, 0.001) and math.isclose(one.high, 0.1)
    assert d["model.dropout"] == optuna.distributions.FloatDistribution(0.0, 0.5)
    assert d["training.batch_size"].choices == (32, 64, 128)
    assert d["model.hidden"].choices == ("[128]", "[256, 128]", "[512, 256, 128]")
    assert d["training.epochs"] == optuna.distributions.IntDistribution(5, 20)
    assert d["model.channels.0"] == optuna.distributions.IntDistribution(8, 64, log=True)


def test_decode_inverts_encode_for_every_kind():
    space = SearchSpace.from_dict({"base": MOMENTUM, "space": {**FULL, "data.train_size": {"choice": [None, 500]},
                                             "training.early_stopping": {"choice": [
                                                 {"enabled": True, "patience": 2}, {"enabled": False}]}}})
    rng = np.random.default_rng(0)
    for _ in range(50):
        values = space.sample(rng)
        back = space.decode(space.encode(values))
        assert back.keys() == values.keys()
        for key, v in values.items():
            assert back[key] == pytest.approx(v, rel=1e-12) if isinstance(v, float) else back[key] == v


def test_decode_of_real_optuna_trials_gives_valid_configs():
    space = SearchSpace.from_dict({"base": MOMENTUM, "space": FULL})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask(space.optuna_params())
        values = space.decode(trial.params)
        assert 0.9 <= values["optimizer.momentum"] <= 0.999
        assert values["model.hidden"] in FULL["model.hidden"]["choice"]
        assert space.encode(values) == pytest.approx(trial.params)
        space.apply(None, values)  # raises if any value is not a valid config
        study.tell(trial, 0.0)


# ------------------------------------------------------------------------ sampling statistics

N = 20000


def _draws(spec: dict, seed: int = 0) -> np.ndarray:
    return parse_dist("k", spec).sample(np.random.default_rng(seed), size=N)


def test_uniform_matches_the_uniform_cdf():
    x = _draws({"uniform": [-2.0, 3.0]})
    assert stats.kstest(x, stats.uniform(-2.0, 5.0).cdf).pvalue > 1e-3
    assert stats.kstest(x, stats.uniform(-2.0, 4.0).cdf).pvalue < 1e-6  # a wrong range fails


def test_log_uniform_is_uniform_in_log():
    x = _draws({"log_uniform": [1e-5, 1.0]})
    assert stats.kstest(np.log(x), stats.uniform(math.log(1e-5), -math.log(1e-5)).cdf).pvalue > 1e-3
    assert stats.kstest(x, stats.uniform(1e-5, 1.0).cdf).pvalue < 1e-6  # not uniform in x


def _one_minus_log_pvalue(x: np.ndarray, a: float, b: float) -> float:
    lo, hi = math.log(1 - b), math.log(1 - a)
    return stats.kstest(np.log1p(-x), stats.uniform(lo, hi - lo).cdf).pvalue


def test_one_minus_log_is_uniform_in_log_one_minus_x():
    x = _draws({"one_minus_log": [0.9, 0.999]})
    assert x.min() >= 0.9 and x.max() <= 0.999
    assert _one_minus_log_pvalue(x, 0.9, 0.999) > 1e-3
    naive = np.random.default_rng(0).uniform(0.9, 0.999, size=N)
    assert _one_minus_log_pvalue(naive, 0.9, 0.999) < 1e-6  # the test can tell the difference
    # equal mass per decade of 1 - x: 0.9..0.99 as likely as 0.99..0.999
    assert np.mean((x > 0.9) & (x < 0.99)) == pytest.approx(0.5, abs=0.015)
    assert np.mean((x > 0.99) & (x < 0.999)) == pytest.approx(0.5, abs=0.015)
    assert np.mean(naive < 0.99) == pytest.approx(0.909, abs=0.01)


def test_int_covers_every_integer_uniformly():
    x = _draws({"int": [3, 9]})
    counts = np.bincount(x - 3, minlength=7)
    assert counts.size == 7 and counts.min() > 0
    assert stats.chisquare(counts).pvalue > 1e-3


def _log_int_expected(low: int, high: int) -> np.ndarray:
    ks = np.arange(low, high + 1)
    edges = np.log(np.clip(np.concatenate([ks - 0.5, [high + 0.5]]), low - 0.5, high + 0.5))
    return np.diff(edges) / (edges[-1] - edges[0])


def test_log_int_covers_every_integer_with_log_frequencies():
    x = _draws({"log_int": [1, 40]})
    counts = np.bincount(x - 1, minlength=40)
    assert counts.size == 40 and counts.min() > 0
    expected = _log_int_expected(1, 40) * N
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    assert stats.chisquare(counts).pvalue < 1e-6  # not uniform over the integers


def test_choice_frequencies_and_values():
    x = _draws({"choice": [[1], [2, 3], None, "a"]})
    counts = [sum(v == c for v in x) for c in ([1], [2, 3], None, "a")]
    assert sum(counts) == N and stats.chisquare(counts).pvalue > 1e-3
