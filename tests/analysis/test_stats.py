"""Statistics of a compare against scipy.stats and hand-computed textbook values."""

from __future__ import annotations

import doctest
import json
import math
import re
import warnings

import numpy as np
import pytest
from scipy import stats as st

from tunelab.analysis import stats
from tunelab.analysis.stats import (
    Paired,
    best_value,
    compare_arms,
    epochs_to_reach,
    final_gap,
    holm,
    paired_comparison,
    power_paired_t,
    seeds_needed,
    smallest_p,
    summarize,
    verdict,
    wilcoxon_min_seeds,
)
from tunelab.errors import ConfigError

DATA = [0.912, 0.905, 0.921, 0.899, 0.915, 0.908, 0.917]
ARM = [0.931, 0.912, 0.925, 0.921, 0.910, 0.940, 0.933, 0.918]
BASE = [0.910, 0.913, 0.915, 0.902, 0.911, 0.921, 0.917, 0.905]


def test_docstring_examples_hold():
    result = doctest.testmod(stats)
    assert result.attempted > 5 and result.failed == 0


# ---------------------------------------------------------------- summarize


@pytest.mark.parametrize("confidence", [0.95, 0.99, 0.8])
def test_summarize_matches_scipy(confidence):
    s = summarize(DATA, confidence)
    low, high = st.t.interval(confidence, len(DATA) - 1, loc=np.mean(DATA), scale=st.sem(DATA))
    assert s.n == 7 and s.confidence == confidence
    assert s.mean == pytest.approx(np.mean(DATA), abs=1e-15)
    assert s.sd == pytest.approx(np.std(DATA, ddof=1), rel=1e-12)
    assert s.sem == pytest.approx(st.sem(DATA), rel=1e-12)
    assert (s.ci_low, s.ci_high) == pytest.approx((low, high), rel=1e-12)


def test_summarize_textbook_example():
    # 2,4,4,4,5,5,7,9: mean 5, squared deviations sum to 32 -> sd = sqrt(32/7) = 2.138,
    # sem = 2.138/sqrt(8) = 0.7559; t table (df=7, 97.5%) = 2.365 -> 5 -+ 1.788
    s = summarize([2, 4, 4, 4, 5, 5, 7, 9])
    assert s.mean == 5.0 and s.sd == pytest.approx(2.138, abs=1e-3)
    assert s.sem == pytest.approx(0.7559, abs=1e-4)
    assert (s.ci_low, s.ci_high) == pytest.approx((3.212, 6.788), abs=2e-3)


def test_summarize_single_value_has_no_spread():
    s = summarize([0.9])
    assert s.n == 1 and s.mean == 0.9
    assert all(math.isnan(v) for v in (s.sd, s.sem, s.ci_low, s.ci_high))


@pytest.mark.parametrize("values, confidence", [([], 0.95), ([1.0, float("nan")], 0.95),
                                                ([1.0, 2.0], 1.0), ([1.0, 2.0], 0.0)])
def test_summarize_rejects_bad_input(values, confidence):
    with pytest.raises(ConfigError):
        summarize(values, confidence)


# ---------------------------------------------------------------- paired comparison


def test_paired_t_matches_scipy():
    p = paired_comparison(ARM, BASE)
    d = np.subtract(ARM, BASE)
    low, high = st.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=st.sem(d))
    assert p.test == "t" and p.n == 8
    assert p.p_value == pytest.approx(st.ttest_rel(ARM, BASE).pvalue, rel=1e-12)
    assert p.mean_diff == pytest.approx(d.mean(), rel=1e-12)
    assert p.sd_diff == pytest.approx(d.std(ddof=1), rel=1e-12)
    assert (p.ci_low, p.ci_high) == pytest.approx((low, high), rel=1e-12)
    assert p.effect_size == pytest.approx(d.mean() / d.std(ddof=1), rel=1e-12)


def test_paired_wilcoxon_matches_scipy():
    p = paired_comparison(ARM, BASE, test="wilcoxon", confidence=0.9)
    d = np.subtract(ARM, BASE)
    assert p.test == "wilcoxon" and p.confidence == 0.9
    assert p.p_value == pytest.approx(st.wilcoxon(ARM, BASE).pvalue, rel=1e-12)
    assert (p.ci_low, p.ci_high) == pytest.approx(
        st.t.interval(0.9, 7, loc=d.mean(), scale=st.sem(d)), rel=1e-12)


def test_effect_size_by_hand():
    # differences 1, 2, 3: mean 2, sd sqrt(((-1)^2 + 0 + 1^2) / 2) = 1 -> d_z = 2;
    # t = 2 / (1 / sqrt(3)) = 3.464 with df 2
    p = paired_comparison([2.0, 3.0, 5.0], [1.0, 1.0, 2.0])
    assert (p.mean_diff, p.sd_diff, p.effect_size) == (2.0, 1.0, 2.0)
    assert p.p_value == pytest.approx(2 * st.t.sf(2 * math.sqrt(3), 2), rel=1e-12)


@pytest.mark.parametrize("test", ["t", "wilcoxon"])
def test_all_zero_differences_give_p_one_without_warnings(test):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = paired_comparison([0.9, 0.8, 0.7], [0.9, 0.8, 0.7], test=test)
    assert (p.p_value, p.effect_size, p.sd_diff, p.ci_low, p.ci_high) == (1.0, 0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("shift, sign", [(0.1, 1), (-0.1, -1)])
def test_constant_nonzero_differences(shift, sign):
    base = [0.9, 0.8, 0.7, 0.6]  # arm - base is shift only up to rounding (0.9-0.8 != 0.1)
    arm = [b + shift for b in base]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = paired_comparison(arm, base)
    assert p.p_value == 0.0 and p.effect_size == sign * math.inf and p.sd_diff == 0.0
    assert p.ci_low == p.ci_high == pytest.approx(shift)
    # the rank test has a well-defined p here: 2 / 2^4 of sign patterns are as extreme
    assert paired_comparison(arm, base, test="wilcoxon").p_value == pytest.approx(0.125)


def test_paired_keeps_the_direction():
    assert paired_comparison(ARM, BASE, higher_is_better=False).higher_is_better is False


@pytest.mark.parametrize("arm, base, kwargs", [
    ([1.0, 2.0, 3.0], [1.0, 2.0], {}),
    ([1.0], [2.0], {}),
    ([1.0, 2.0], [2.0, 3.0], {"test": "mann-whitney"}),
    ([1.0, math.inf], [2.0, 3.0], {}),
    ([1.0, 2.0], [2.0, 3.0], {"confidence": 95}),
])
def test_paired_rejects_bad_input(arm, base, kwargs):
    with pytest.raises(ConfigError) as err:
        paired_comparison(arm, base, **kwargs)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- holm


def test_holm_textbook_example():
    # sorted: 0.005, 0.01, 0.03, 0.04 times m - i + 1 = 4, 3, 2, 1:
    #   0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    # back in the given order (0.01, 0.04, 0.03, 0.005): 0.03, 0.06, 0.06, 0.02
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)


def test_holm_caps_at_one_and_handles_ties_and_edges():
    assert holm([0.5, 0.6, 0.9]) == [1.0, 1.0, 1.0]
    assert holm([0.01, 0.01]) == pytest.approx([0.02, 0.02])
    assert holm([0.03]) == [0.03]
    assert holm([]) == []


def test_holm_is_monotone_and_never_below_raw():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.uniform(0, 0.2, size=rng.integers(2, 9))
        adj = np.array(holm(p))
        order = np.argsort(p)
        assert np.all(np.diff(adj[order]) >= 0)
        assert np.all(adj >= p) and np.all(adj <= 1)
        assert adj.min() == pytest.approx(len(p) * p.min())


@pytest.mark.parametrize("bad", [[0.1, 1.2], [-0.01], [float("nan")]])
def test_holm_rejects_non_probabilities(bad):
    with pytest.raises(ConfigError):
        holm(bad)


# ---------------------------------------------------------------- power and seeds


def _power(d, n, alpha=0.05):
    """Independent of the module: both tails straight from nct (fine at these sizes)."""
    crit = st.t.ppf(1 - alpha / 2, n - 1)
    return st.nct.sf(crit, n - 1, d * math.sqrt(n)) + st.nct.cdf(-crit, n - 1, d * math.sqrt(n))


@pytest.mark.parametrize("d, n", [(0.5, 34), (0.8, 15), (0.2, 199)])  # standard paired-t tables
def test_seeds_needed_table_values(d, n):
    assert seeds_needed(d) == n
    assert _power(d, n) >= 0.8 > _power(d, n - 1)


def test_power_agrees_with_simulation():
    rng = np.random.default_rng(1)
    diffs = rng.normal(0.5, 1.0, size=(40000, 34))  # true d_z = 0.5
    t = diffs.mean(1) / (diffs.std(1, ddof=1) / math.sqrt(34))
    rejected = np.mean(np.abs(t) > st.t.ppf(0.975, 33))
    assert rejected == pytest.approx(power_paired_t(0.5, 34), abs=0.01)
    assert power_paired_t(0.0, 34) == pytest.approx(0.05, abs=1e-9)  # size of the test


def test_power_is_finite_and_rises_for_large_effects():
    # scipy's nct.cdf is nan in the far lower tail: the module must not be
    for d in (0.05, 0.5, 3.0, 6.0, 20.0):
        p = [power_paired_t(d, n) for n in (*range(2, 40), 1000, 10000)]
        assert np.all(np.isfinite(p)) and np.all(np.diff(p) >= -1e-12)


def test_seeds_needed_shape():
    ns = [seeds_needed(d) for d in (0.3, 0.5, 1.0, 2.0, 6.0)]
    assert ns == sorted(ns, reverse=True) and ns[-1] >= 2 and ns[0] > ns[1]
    assert seeds_needed(-0.5) == seeds_needed(0.5)
    assert seeds_needed(0.5, power=0.9) > seeds_needed(0.5) > seeds_needed(0.5, alpha=0.1)
    assert seeds_needed(math.inf) == 2


@pytest.mark.parametrize("d, kwargs", [(0.0, {}), (math.nan, {}), (1e-3, {}), (0.5, {"max_n": 33})])
def test_seeds_needed_none(d, kwargs):
    assert seeds_needed(d, **kwargs) is None


def test_seeds_needed_max_n_is_inclusive():
    assert seeds_needed(0.5, max_n=34) == 34


@pytest.mark.parametrize("d", [0.3, 0.5, 0.8, 1.0, 2.0])
def test_seeds_needed_one_comparison_is_the_plain_t_test(d):
    assert seeds_needed(d, comparisons=1) == seeds_needed(d) == seeds_needed(d, comparisons=1, test="t")


@pytest.mark.parametrize("d", [0.3, 0.5, 1.0, 1.88])
def test_seeds_needed_uses_the_bonferroni_level_across_comparisons(d):
    n = seeds_needed(d, comparisons=7)
    assert n > seeds_needed(d)
    assert _power(d, n, 0.05 / 7) >= 0.8 > _power(d, n - 1, 0.05 / 7)  # t-test power at alpha/m
    assert seeds_needed(d, comparisons=7) == seeds_needed(d, alpha=0.05 / 7)


def test_wilcoxon_smallest_p_matches_scipy_exact_test():
    for n in range(2, 9):
        assert smallest_p(n, "wilcoxon") == pytest.approx(
            st.wilcoxon(np.arange(1.0, n + 1), np.zeros(n), method="exact").pvalue)
    assert smallest_p(5, "wilcoxon") == 0.0625 and smallest_p(6, "wilcoxon") == 0.03125
    assert smallest_p(2, "t") == 0.0
    with pytest.raises(ConfigError):
        smallest_p(5, "sign")


def test_wilcoxon_floor_on_seeds_needed():
    # per-comparison alpha 0.05: 5 pairs (p >= 0.0625) can never be enough, 6 (0.03125) can
    assert wilcoxon_min_seeds(0.05) == 6
    assert seeds_needed(math.inf, test="wilcoxon") == 6 and seeds_needed(math.inf) == 2
    assert seeds_needed(3.0) == 4 and seeds_needed(3.0, test="wilcoxon") == 6
    # alpha 0.05/7 = 0.00714: 2/2^8 = 0.0078 is too big, 2/2^9 = 0.0039 is not
    assert wilcoxon_min_seeds(0.05 / 7) == 9 and seeds_needed(3.0, comparisons=7, test="wilcoxon") == 9
    # where the power calculation already asks for more, the floor changes nothing
    assert seeds_needed(0.5, test="wilcoxon") == seeds_needed(0.5) == 34
    assert seeds_needed(3.0, test="wilcoxon", max_n=5) is None
    with pytest.raises(ConfigError):
        seeds_needed(0.5, comparisons=0)
    with pytest.raises(ConfigError):
        seeds_needed(0.5, test="sign")


# ---------------------------------------------------------------- verdict


def _paired(mean, ci, p, d, n=5, **kw):
    return Paired(n=n, mean_diff=mean, sd_diff=abs(mean / d) if d else 0.0, ci_low=ci[0],
                  ci_high=ci[1], p_value=p, effect_size=d, test="t", **kw)


def test_verdict_texts():
    better = verdict(_paired(0.0084, (0.0031, 0.0137), 0.001, 2.1), 0.004, scale=100, unit="points")
    assert better.label == "better"
    assert better.text == "better by +0.84 points (95% CI +0.31 to +1.37), p=0.004 (Holm)"
    none = verdict(_paired(0.002, (-0.001, 0.005), 0.3, 0.41), 0.3)
    assert none.label == "no detectable difference" and none.seeds_needed == 49
    assert none.text == ("no detectable difference at 5 seeds (observed d_z=0.41; about 49 seeds "
                         "would be needed to detect it with 80% power)")
    tiny = verdict(_paired(1e-5, (-0.001, 0.001), 0.9, 0.001), 0.9)
    assert tiny.seeds_needed is None and "more than 10000 seeds" in tiny.text
    zero = verdict(paired_comparison([1.0, 2.0], [1.0, 2.0]), 1.0)
    assert zero.seeds_needed is None and zero.text.endswith("(observed d_z=0.00; no difference to detect)")
    small = verdict(_paired(-3e-5, (-4e-5, -2e-5), 1e-5, -3.0), 2e-4, unit="s", adjustment="")
    assert small.text == "worse by -0.000030 s (95% CI -0.000040 to -0.000020), p<0.001"


def test_verdict_counts_the_comparisons():
    # the shipped MNIST report's tanh arm: raw p=0.0136, Holm over 7 arms 0.068, d_z=-1.88
    tanh = _paired(-0.0030, (-0.0050, -0.0010), 0.0136, -1.88)
    v = verdict(tanh, 0.068, comparisons=7, scale=100, unit="points")
    assert v.seeds_needed == seeds_needed(-1.88, comparisons=7) == 8
    assert v.text == ("no detectable difference at 5 seeds (observed d_z=-1.88; about 8 seeds "
                      "would be needed to detect it with 80% power at alpha=0.05/7)")


def test_verdict_never_asks_for_the_seeds_already_run():
    # ignoring the 7 comparisons the t-test power says 5 seeds suffice for d_z=1.88: the
    # verdict at 5 seeds must not say so
    assert seeds_needed(1.88) == 5
    v = verdict(_paired(-0.0030, (-0.0050, -0.0010), 0.0136, -1.88), 0.068)
    assert v.seeds_needed == 6
    assert v.text == ("no detectable difference at 5 seeds (observed d_z=-1.88; at the edge of "
                      "detection with 5 seeds: at least 6 seeds would be needed to detect it reliably)")
    for n in (2, 3, 5, 8, 20):
        for d in (0.3, 0.8, 1.5, 2.5, 5.0, math.inf):
            for m in (1, 3, 7):
                for test in ("t", "wilcoxon"):
                    p = Paired(n, 0.01, 0.01 / d, 0.0, 0.02, 0.2, d, test)
                    v = verdict(p, 0.2, comparisons=m)
                    assert v.label == "no detectable difference" and v.seeds_needed > n
                    counts = [int(k) for k in re.findall(r"(?:about|at least) (\d+) seeds", v.text)]
                    assert counts and all(k > n for k in counts), v.text


def test_verdict_says_wilcoxon_cannot_reach_significance():
    # 2 seeds, an 84-point drop: the exact signed-rank test's p is at least 2/2^2 = 0.5
    base, arm = [0.95, 0.95], [0.10, 0.12]
    w = paired_comparison(arm, base, test="wilcoxon")
    assert w.p_value == 0.5 and w.ci_high < 0
    v = verdict(w, w.p_value, scale=100, unit="points")
    assert v.label == "no detectable difference" and v.seeds_needed == 6
    assert v.text.startswith("no detectable difference at 2 seeds: Wilcoxon cannot reach p<0.05 with "
                             "2 seeds (smallest possible p=0.5); use at least 6 seeds or the t-test")
    rows = compare_arms({"base": base, "arm": arm, "other": [0.9, 0.91]}, "base", test="wilcoxon")
    assert "Wilcoxon cannot reach p<0.05 after Holm over 2 comparisons with 2 seeds (smallest possible " \
           "adjusted p=1); use at least 7 seeds or the t-test" in rows[1]["verdict"]["text"]
    assert rows[1]["verdict"]["seeds_needed"] == 7
    # 5 pairs: 0.0625 is still not below 0.05; 6 pairs can be, and then nothing is claimed
    five = verdict(paired_comparison([1.0, 2.1, 3.3, 4.2, 5.6], [0, 0, 0, 0, 0], test="wilcoxon"), 0.0625)
    assert "cannot reach p<0.05 with 5 seeds (smallest possible p=0.0625); use at least 6" in five.text
    six = paired_comparison([1.0, 2.1, 3.3, 4.2, 5.6, 6.0], [0] * 6, test="wilcoxon")
    assert verdict(six, six.p_value).label == "better"
    assert "cannot reach" not in verdict(six, 0.2).text
    # the t-test has no such floor
    assert "cannot reach" not in verdict(paired_comparison(arm, base), 0.2).text


def test_verdict_on_constructed_runs():
    base = [0.90, 0.91, 0.92, 0.90, 0.91]
    up = paired_comparison([b + 0.02 + e for b, e in zip(base, [0.0, 0.004, -0.003, 0.002, -0.001])], base)
    down = paired_comparison([b - 0.02 + e for b, e in zip(base, [0.0, 0.004, -0.003, 0.002, -0.001])], base)
    noise = paired_comparison([b + e for b, e in zip(base, [0.01, -0.004, 0.006, -0.011, 0.003])], base)
    assert verdict(up, up.p_value).label == "better"
    assert verdict(down, down.p_value).label == "worse"
    assert verdict(up, up.p_value, higher_is_better=False).label == "worse"
    v = verdict(noise, noise.p_value)
    assert v.label == "no detectable difference" and v.seeds_needed > 5
    assert v.seeds_needed == seeds_needed(noise.effect_size)
    assert verdict(up, 0.05).label == "no detectable difference"  # strictly below alpha
    assert verdict(up, 0.05, alpha=0.1).label == "better"


def test_lower_is_better_flips_the_label():
    seconds_base = [10.0, 11.0, 12.0, 10.5, 11.5]
    faster = paired_comparison([s - 2 + e for s, e in zip(seconds_base, [0.1, -0.2, 0.0, 0.1, -0.1])],
                               seconds_base, higher_is_better=False)
    v = verdict(faster, faster.p_value, unit="s")  # direction taken from the comparison
    assert v.label == "better" and v.text.startswith("better by -2.0")
    assert verdict(faster, faster.p_value, higher_is_better=True).label == "worse"


def test_holm_can_remove_a_raw_significance():
    base = [0.90, 0.91, 0.92, 0.90, 0.91]
    arm = [b + e for b, e in zip(base, [0.012, 0.002, 0.010, 0.004, 0.009])]
    raw = paired_comparison(arm, base).p_value
    assert 0.01 < raw < 0.05
    rows = compare_arms({"base": base, "a": arm, "b": base[::-1], "c": [b + 0.001 for b in base[::-1]]},
                        "base")
    a = next(r for r in rows if r["arm"] == "a")
    assert a["paired"]["p_value"] == pytest.approx(raw) and a["p_adjusted"] >= 0.05
    assert a["verdict"]["label"] == "no detectable difference"
    assert verdict(paired_comparison(arm, base), raw).label == "better"


# ---------------------------------------------------------------- compare_arms


def test_compare_arms_rows_are_plain_data():
    wide = [b + 0.01 + 0.001 * i for i, b in enumerate(BASE)]  # 8 of 8 up: Wilcoxon p = 2/2^8
    results = {"base": BASE, "wide": wide, "deep": [b + 0.001 * (-1) ** i for i, b in enumerate(BASE)]}
    rows = compare_arms(results, "base", test="wilcoxon", scale=100, unit="points")
    assert [r["arm"] for r in rows] == ["base", "wide", "deep"]
    assert set(rows[0]) == {"arm", "baseline", "summary"} and rows[0]["baseline"] is True
    assert rows[0]["summary"]["mean"] == pytest.approx(np.mean(BASE))
    raw = [paired_comparison(results[a], BASE, test="wilcoxon").p_value for a in ("wide", "deep")]
    assert raw[0] == pytest.approx(2 / 2**8)
    assert [r["p_adjusted"] for r in rows[1:]] == pytest.approx(holm(raw))
    assert rows[1]["paired"]["test"] == "wilcoxon" and rows[1]["verdict"]["label"] == "better"
    assert rows[2]["verdict"]["label"] == "no detectable difference"
    json.dumps(rows)  # plain data all the way down


def test_compare_arms_errors():
    with pytest.raises(ConfigError, match="baseline='none'"):
        compare_arms({"a": [1.0, 2.0]}, "none")
    with pytest.raises(ConfigError, match="differ in length"):
        compare_arms({"a": [1.0, 2.0], "b": [1.0, 2.0, 3.0]}, "a")
    assert len(compare_arms({"a": [1.0, 2.0]}, "a")) == 1


# ---------------------------------------------------------------- run metrics

HISTORY = [
    dict(epoch=1, train_loss=1.2, train_accuracy=0.60, val_loss=1.0, val_accuracy=0.65),
    dict(epoch=2, train_loss=0.6, train_accuracy=0.85, val_loss=0.7, val_accuracy=0.80),
    dict(epoch=3, train_loss=0.3, train_accuracy=0.93, val_loss=0.5, val_accuracy=0.90),
    dict(epoch=4, train_loss=0.1, train_accuracy=0.99, val_loss=0.6, val_accuracy=0.89),
]


def test_epochs_to_reach():
    assert epochs_to_reach(HISTORY, target=0.8) == 2  # equality counts
    assert epochs_to_reach(HISTORY, target=0.85) == 3
    assert epochs_to_reach(HISTORY, target=0.95) is None
    assert epochs_to_reach(HISTORY, "train_accuracy", target=0.95) == 4
    assert epochs_to_reach(HISTORY, "val_loss", target=0.65, mode="min") == 3
    nan_first = [dict(epoch=1, val_accuracy=float("nan")), dict(epoch=2, val_accuracy=0.9)]
    assert epochs_to_reach(nan_first, target=0.5) == 2


def test_final_gap_and_best_value():
    assert final_gap(HISTORY) == pytest.approx(0.10)
    assert best_value(HISTORY, "val_accuracy", "max") == 0.90
    assert best_value(HISTORY, "val_loss", "min") == 0.5
    assert math.isnan(best_value([dict(val_loss=float("nan"))], "val_loss", "min"))


@pytest.mark.parametrize("call", [
    lambda: epochs_to_reach([], target=0.9),
    lambda: epochs_to_reach(HISTORY, "val_acc", target=0.9),
    lambda: epochs_to_reach(HISTORY, target=0.9, mode="best"),
    lambda: final_gap([]),
    lambda: best_value(HISTORY, "val_loss", "lowest"),
])
def test_metric_helpers_reject_bad_input(call):
    with pytest.raises(ConfigError):
        call()
