"""Population-based training: the plan (who copies whom), exploration in the space where each
distribution is uniform, and exploit inside train_population copying exactly what it says."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tunelab.config import from_dict
from tunelab.errors import ConfigError
from tunelab.population import train_population
from tunelab.population.pbt import PBTConfig, check_space, explore, plan
from tunelab.search.distributions import parse_dist
from tunelab.trainer.prepare import load_run_data


def _cfg(*overrides):
    return from_dict({}, ["data.name=digits", "model.hidden=[32]", "training.threads=1", "training.batch_size=64",
                          *overrides])


def test_plan_copies_the_top_quantile_into_the_bottom_one():
    rng = np.random.default_rng(0)
    scores = [0.1, 0.9, 0.5, 0.8, float("nan"), 0.3, 0.7, 0.6]
    pairs = plan(scores, 0.25, rng)
    assert sorted(d for d, _ in pairs) == [0, 4]  # the worst two (nan ranks last)
    assert all(s in (1, 3) for _, s in pairs)  # copy one of the best two
    assert plan([0.5], 0.25, rng) == [] and len(plan([0.2, 0.1], 0.25, rng)) == 1
    # a loss is minimized: the highest loss copies the lowest
    assert plan([0.3, 2.0, 0.1], 0.34, rng, maximize=False) == [(1, 2)]


@pytest.mark.parametrize("spec, value, factor, expected", [
    ({"log_uniform": [1e-4, 1e-1]}, 0.01, 1.2, 0.012),
    ({"log_uniform": [1e-4, 1e-1]}, 0.09, 1.2, 0.1),            # clipped to the range
    ({"uniform": [0.0, 0.5]}, 0.25, 0.8, 0.2),
    ({"one_minus_log": [0.9, 0.999]}, 0.99, 1.2, 0.988),        # 1 - x is perturbed
    ({"int": [1, 10]}, 5, 1.2, 6),
    ({"choice": [0.0, 0.1, 0.2]}, 0.1, 1.2, 0.2),               # the next choice
])
def test_explore_perturbs_where_the_distribution_is_uniform(spec, value, factor, expected):
    cfg = PBTConfig({"k": parse_dist("k", spec)}, factors=(factor,), resample=0.0)
    got = explore({"k": value}, cfg, np.random.default_rng(0))["k"]
    assert got == pytest.approx(expected)


def test_explore_resamples_within_the_range():
    dist = parse_dist("optimizer.lr", {"log_uniform": [1e-4, 1e-1]})
    cfg = PBTConfig({"optimizer.lr": dist}, resample=1.0)
    rng = np.random.default_rng(1)
    values = [explore({"optimizer.lr": 0.01}, cfg, rng)["optimizer.lr"] for _ in range(200)]
    assert all(1e-4 <= v <= 1e-1 for v in values) and len(set(values)) == 200
    logs = np.log10(values)  # log-uniform: about as many below 1e-2.5 as above
    assert 60 < (logs < -2.5).sum() < 140


def test_only_per_member_hyperparameters_may_be_explored():
    check_space(["optimizer.lr", "optimizer.momentum", "model.dropout"])
    with pytest.raises(ConfigError, match=r"^space.training.batch_size cannot change while a member trains"):
        check_space(["training.batch_size"])


def test_exploit_copies_weights_optimizer_and_hyperparameters_exactly():
    """Two members of one seed differ only in lr; after the first epoch the worse copies the better
    without perturbation, so from then on they are the same run: equal weights at the end, equal
    history after the copy, and the copy recorded in the member's events."""
    data = load_run_data(_cfg())
    space = {"optimizer.lr": parse_dist("optimizer.lr", {"log_uniform": [1e-4, 1e-1]})}
    cfgs = [_cfg("optimizer.name=momentum", f"optimizer.lr={lr}", "training.epochs=3", "model.norm=batch",
                 "model.dropout=0.2") for lr in (0.05, 1e-4)]
    pbt = PBTConfig(space, interval=2, quantile=0.5, factors=(1.0,), resample=0.0)
    good, bad = train_population(cfgs, data, pbt=pbt, test=False)
    a, b = good.model.state_dict(), bad.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # weights, batch-norm statistics: one run
    assert good.history[2] == {**bad.history[2], "seconds": good.history[2]["seconds"]}
    assert bad.history[0]["val_accuracy"] < good.history[0]["val_accuracy"]  # before: different runs
    events = [e for e in bad.events if e["kind"] == "pbt"]
    assert len(events) == 1 and events[0]["epoch"] == 2 and events[0]["from"] == 0
    assert events[0]["values"] == {"optimizer.lr": pytest.approx(0.05)}
    assert bad.history[2]["lr"] == pytest.approx(0.05) and not [e for e in good.events if e["kind"] == "pbt"]


def test_exploit_with_adam_member_by_member_copies_the_optimizer_state(monkeypatch):
    import tunelab.population.optim as optim

    monkeypatch.setattr(optim, "PER_MEMBER_AT", 0)
    data = load_run_data(_cfg())
    space = {"optimizer.lr": parse_dist("optimizer.lr", {"log_uniform": [1e-4, 1e-1]})}
    cfgs = [_cfg("optimizer.name=adam", f"optimizer.lr={lr}", "training.epochs=3") for lr in (0.01, 1e-5)]
    good, bad = train_population(cfgs, data, pbt=PBTConfig(space, interval=1, quantile=0.5, factors=(1.0,),
                                                           resample=0.0), test=False)
    a, b = good.model.state_dict(), bad.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert math.isclose(bad.history[-1]["val_loss"], good.history[-1]["val_loss"])


PBT_SPACE = {"base": {"data": {"name": "digits"}, "model": {"hidden": [32]}, "training": {"epochs": 4, "threads": 1}},
             "space": {"optimizer.lr": {"log_uniform": [1e-4, 1e-1]}, "model.dropout": {"uniform": [0.0, 0.5]}}}


def test_a_pbt_study_trains_one_population_and_stores_each_members_lineage():
    import tunelab

    result = tunelab.tune(PBT_SPACE, sampler="pbt", trials=8, interval=2, seed=0)
    trials = result.study.trials
    assert len(trials) == 8 and all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 1  # one population
    copies = [e for t in trials for e in t.user_attrs["result"].get("pbt", [])]
    assert copies and all(e["epoch"] in (2,) for e in copies)  # interval 2 of 4 epochs: one step
    assert len(copies) == 2  # the bottom quarter of 8
    numbers = {t.number for t in trials}
    for t in trials:
        for e in t.user_attrs["result"].get("pbt", []):
            assert e["from_trial"] in numbers and e["from_trial"] != t.number
            assert e["score"] <= e["from_score"]
            assert 1e-4 <= e["values"]["optimizer.lr"] <= 1e-1 and 0.0 <= e["values"]["model.dropout"] <= 0.5
            # from the copy on, the member trains with its new lr
            assert t.user_attrs["history"][e["epoch"]]["lr"] == pytest.approx(e["values"]["optimizer.lr"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(pruner="median"), r"^pruner='median' does not go with sampler='pbt'"),
    (dict(workers=2), r"^workers=2 does not go with sampler='pbt'"),
    (dict(executor="inline"), r"^executor='inline' does not go with sampler='pbt'"),
    (dict(population_size=4), r"^population_size=4 differs from trials=8"),
    (dict(interval=0), r"^interval=0 is out of range"),
])
def test_pbt_refuses_what_it_cannot_do_in_one_line(kwargs, message):
    import tunelab

    with pytest.raises(ConfigError, match=message):
        tunelab.tune(PBT_SPACE, sampler="pbt", trials=8, **kwargs)


def test_pbt_refuses_a_space_of_structural_keys():
    import tunelab

    space = {**PBT_SPACE, "space": {"model.hidden": {"choice": [[16], [32]]}}}
    with pytest.raises(ConfigError, match=r"^space.model.hidden cannot change while a member trains"):
        tunelab.tune(space, sampler="pbt", trials=4)


def test_the_study_report_draws_the_lineage_of_a_pbt_study():
    import tunelab
    from tunelab.report.study_figs import lineage_data, study_figures

    result = tunelab.tune(PBT_SPACE, sampler="pbt", trials=8, interval=2, seed=1)
    data = lineage_data(result.study)
    stored = sorted((e["epoch"], e["from_trial"], t.number) for t in result.study.trials
                    for e in t.user_attrs["result"].get("pbt", []))
    assert sorted((c["epoch"], c["source"], c["target"]) for c in data["copies"]) == stored and stored
    for epoch, _, target in stored:  # the schedule changes at the copy, to the stored values
        points = data["schedules"][target]["points"]
        assert any(e == epoch for e, _ in points)
    figs = study_figures(result.study)
    assert "lineage" in figs and len(figs["lineage"].axes) == 2
    plain = tunelab.tune(PBT_SPACE, sampler="random", trials=2, seed=1)
    assert "lineage" not in study_figures(plain.study)
