"""Factorial effects on constructed designs with known additive effects and interactions."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from tunelab.analysis import effects
from tunelab.analysis.effects import cell_means, interactions, main_effects
from tunelab.errors import ConfigError

BN = {"none": 0.0, "batch": 0.04}             # additive effect of each level
OPT = {"adam": 0.02, "sgd": 0.0, "nag": 0.01}
SEED_NOISE = (-0.003, 0.001, 0.002)           # sums to 0: cell means are exact


def _runs(interaction=lambda bn, opt: 0.0, noise=SEED_NOISE):
    return [dict(bn=bn, opt=opt, seed=s, value=0.9 + BN[bn] + OPT[opt] + interaction(bn, opt) + e)
            for bn in BN for opt in OPT for s, e in enumerate(noise)]


def test_docstring_examples_hold():
    result = doctest.testmod(effects)
    assert result.attempted > 3 and result.failed == 0


def test_additive_3x2_main_effects_are_recovered_exactly():
    main = main_effects(_runs(), ["bn", "opt"])
    mean_opt, mean_bn = np.mean(list(OPT.values())), np.mean(list(BN.values()))
    assert list(main["bn"].means) == ["batch", "none"]  # levels sorted
    for level, effect in BN.items():
        assert main["bn"].means[level] == pytest.approx(0.9 + effect + mean_opt, abs=1e-12)
    for level, effect in OPT.items():
        assert main["opt"].means[level] == pytest.approx(0.9 + mean_bn + effect, abs=1e-12)
    assert main["bn"].effect == pytest.approx(0.04, abs=1e-12)
    assert main["opt"].effect == pytest.approx(0.02, abs=1e-12)
    inter = interactions(_runs(), "bn", "opt")
    assert inter.strength == pytest.approx(0.0, abs=1e-12) and inter.contrast is None
    assert inter.means[("batch", "adam")] == pytest.approx(0.96, abs=1e-12)
    assert len(inter.means) == 6 and inter.levels == (["batch", "none"], ["adam", "nag", "sgd"])


def test_additive_2x2_has_zero_interaction():
    runs = [r for r in _runs() if r["opt"] != "nag"]
    inter = interactions(runs, "opt", "bn")
    assert inter.factors == ("opt", "bn")
    assert inter.contrast == pytest.approx(0.0, abs=1e-12)
    assert inter.strength == pytest.approx(0.0, abs=1e-12)
    assert main_effects(runs, ["opt"])["opt"].effect == pytest.approx(0.02, abs=1e-12)


def test_2x2_interaction_is_recovered():
    # only batch + sgd (cell 01) gets an extra +0.03: (m11 - m10 - m01 + m00) / 2 = -0.015
    runs = [r for r in _runs(lambda bn, opt: 0.03 * (bn == "batch" and opt == "sgd")) if r["opt"] != "nag"]
    inter = interactions(runs, "bn", "opt")  # levels (batch, none) x (adam, sgd): "1" = none, sgd
    assert inter.contrast == pytest.approx(-0.015, abs=1e-12)
    assert inter.strength == pytest.approx(0.015, abs=1e-12)


def test_3x2_interaction_is_recovered_and_leaves_main_effects_alone():
    # a residual pattern whose rows and columns sum to zero is pure interaction:
    # strength = sqrt(sum r^2 / ((3-1)(2-1))) = sqrt(12 k^2 / 2) = k sqrt(6)
    k = 0.005
    pattern = {("batch", "adam"): k, ("batch", "sgd"): -2 * k, ("batch", "nag"): k}
    pattern.update({("none", o): -v for (_, o), v in list(pattern.items())})
    runs = _runs(lambda bn, opt: pattern[(bn, opt)])
    inter = interactions(runs, "bn", "opt")
    assert inter.strength == pytest.approx(k * math.sqrt(6), rel=1e-9)
    main = main_effects(runs, ["bn", "opt"])
    assert main["bn"].effect == pytest.approx(0.04, abs=1e-12)
    assert main["opt"].effect == pytest.approx(0.02, abs=1e-12)


def test_unbalanced_cells_do_not_leak_one_effect_into_another():
    # batch+adam keeps 5 extra seeds: a mean over runs would pull bn's effect with adam's
    runs = _runs() + [dict(bn="batch", opt="adam", value=0.96)] * 5
    main = main_effects(runs, ["bn", "opt"])
    assert main["bn"].effect == pytest.approx(0.04, abs=1e-12)
    assert main["opt"].effect == pytest.approx(0.02, abs=1e-12)
    assert interactions(runs, "bn", "opt").strength == pytest.approx(0.0, abs=1e-12)


def test_missing_cells():
    no_cell = [r for r in _runs() if not (r["bn"] == "none" and r["opt"] == "sgd")]
    inter = interactions(no_cell, "bn", "opt")  # 5 cells, 4 additive parameters: 1 dof left
    assert inter.strength == pytest.approx(0.0, abs=1e-12) and ("none", "sgd") not in inter.means
    two_by_two = [r for r in no_cell if r["opt"] != "nag"]  # 3 cells: no dof for an interaction
    lone = interactions(two_by_two, "bn", "opt")
    assert math.isnan(lone.strength) and lone.contrast is None


def test_cell_means_and_level_order():
    runs = [dict(a="x", value=1.0), dict(a=2, value=3.0), dict(a="x", value=2.0)]
    assert cell_means(runs, ["a"]) == {("x",): 1.5, (2,): 3.0}
    assert list(main_effects(runs, ["a"])["a"].means) == ["x", 2]  # unorderable: as first seen


@pytest.mark.parametrize("call", [
    lambda: main_effects([], ["bn"]),
    lambda: main_effects(_runs(), []),
    lambda: main_effects(_runs(), ["width"]),
    lambda: main_effects([dict(bn="batch", value=float("nan"))], ["bn"]),
    lambda: main_effects([dict(bn=[64, 32], value=1.0)], ["bn"]),
    lambda: interactions(_runs(), "bn", "bn"),
])
def test_bad_runs_are_rejected(call):
    with pytest.raises(ConfigError):
        call()
