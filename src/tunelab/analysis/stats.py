"""Statistics of a paired compare: summaries, paired tests, Holm, power, verdicts, run metrics.

Every arm of a compare runs the same seeds, so arm and baseline are compared seed by seed
(differences ``arm - baseline``). All functions are pure and return plain data; the
reference for every number is ``scipy.stats``.

Example:
    >>> rows = compare_arms({"base": [0.90, 0.91, 0.92, 0.90, 0.91],
    ...                      "wide": [0.93, 0.935, 0.95, 0.92, 0.94]}, "base", scale=100, unit="points")
    >>> rows[1]["verdict"]["label"]
    'better'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence

import numpy as np
from scipy import stats as st

from tunelab.errors import ConfigError

__all__ = ["Summary", "Paired", "Verdict", "TESTS", "summarize", "paired_comparison", "holm",
           "power_paired_t", "smallest_p", "wilcoxon_min_seeds", "seeds_needed", "verdict",
           "compare_arms", "epochs_to_reach", "final_gap", "gap_source", "best_value", "learn_threshold",
           "learned", "fisher_divergence"]

TESTS = ("t", "wilcoxon")
_ZERO_SD_RTOL = 1e-9  # sd of differences below this * max|difference| is rounding noise: zero


@dataclass(frozen=True)
class Summary:
    """Mean of n values with its sample sd (ddof=1), standard error and t interval."""

    n: int
    mean: float
    sd: float
    sem: float
    ci_low: float
    ci_high: float
    confidence: float = 0.95


@dataclass(frozen=True)
class Paired:
    """Paired comparison of arm against baseline; every number is of ``arm - baseline``."""

    n: int
    mean_diff: float
    sd_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    effect_size: float  # Cohen's d_z = mean_diff / sd_diff
    test: str
    confidence: float = 0.95
    higher_is_better: bool = True


@dataclass(frozen=True)
class Verdict:
    """``label`` is "better", "worse" or "no detectable difference"; ``text`` says why."""

    label: str
    text: str
    seeds_needed: Optional[int]


# ---------------------------------------------------------------- validation


def _values(values: Sequence[float], name: str, at_least: int) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or len(x) < at_least:
        raise ConfigError(f"{name} needs at least {at_least} values in a flat list, got {len(values)}")
    if not np.all(np.isfinite(x)):
        raise ConfigError(f"{name} has non-finite values: {x[~np.isfinite(x)].tolist()}")
    return x


def _fraction(value: float, name: str) -> float:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name}={value!r} must lie strictly between 0 and 1")
    return float(value)


def _t_interval(mean: float, sem: float, n: int, confidence: float) -> tuple[float, float]:
    """Two-sided t interval; a zero sem gives the point (scipy's interval would be nan)."""
    half = float(st.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    return mean - half, mean + half


# ---------------------------------------------------------------- summaries and tests


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean, sd (ddof=1), sem and the t confidence interval of the mean; n=1 gives nan spread.

    Example:
        >>> s = summarize([1, 2, 3, 4, 5])
        >>> round(s.sd, 4), round(s.ci_low, 3), round(s.ci_high, 3)
        (1.5811, 1.037, 4.963)
    """
    x, c = _values(values, "summarize", 1), _fraction(confidence, "confidence")
    n, mean = len(x), float(np.mean(x))
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan, math.nan, c)
    sd = float(np.std(x, ddof=1))
    sem = sd / math.sqrt(n)
    return Summary(n, mean, sd, sem, *_t_interval(mean, sem, n, c), c)


def _p_value(arm: np.ndarray, baseline: np.ndarray, test: str, zero_sd: bool, mean: float) -> float:
    if zero_sd and mean == 0.0:
        return 1.0  # no difference at all; both scipy tests would give nan or warn
    if test == "t":
        return 0.0 if zero_sd else float(st.ttest_rel(arm, baseline).pvalue)
    return float(st.wilcoxon(arm, baseline).pvalue)  # rank test: constant shifts are fine


def paired_comparison(arm: Sequence[float], baseline: Sequence[float], *, test: str = "t",
                      confidence: float = 0.95, higher_is_better: bool = True) -> Paired:
    """Compare arm with baseline seed by seed: two-sided paired t-test or Wilcoxon signed-rank.

    The interval is the t interval of the differences (for either test). When the
    differences do not vary: p=0 and d_z=+-inf if they are nonzero (t-test; Wilcoxon keeps
    scipy's p), p=1 and d_z=0 if they are all zero.

    Example:
        >>> p = paired_comparison([2.0, 3.0, 5.0], [1.0, 1.0, 2.0])
        >>> p.mean_diff, p.sd_diff, p.effect_size, round(p.p_value, 4)
        (2.0, 1.0, 2.0, 0.0742)
    """
    if test not in TESTS:
        raise ConfigError(f"test={test!r} is not known; choose one of {sorted(TESTS)}")
    a, b = _values(arm, "arm", 2), _values(baseline, "baseline", 2)
    if len(a) != len(b):
        raise ConfigError(f"paired samples differ in length: arm has {len(a)}, baseline {len(b)}")
    c, d = _fraction(confidence, "confidence"), a - b
    mean, sd = float(np.mean(d)), float(np.std(d, ddof=1))
    zero_sd = sd <= _ZERO_SD_RTOL * float(np.max(np.abs(d)))
    sd = 0.0 if zero_sd else sd
    d_z = (math.copysign(math.inf, mean) if mean else 0.0) if zero_sd else mean / sd
    low, high = _t_interval(mean, sd / math.sqrt(len(d)), len(d), c)
    return Paired(len(d), mean, sd, low, high, _p_value(a, b, test, zero_sd, mean), d_z, test,
                  c, higher_is_better)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, at most 1) in the given order.

    Example:
        >>> [round(p, 4) for p in holm([0.01, 0.04, 0.03, 0.005])]
        [0.03, 0.06, 0.06, 0.02]
    """
    p = np.asarray(p_values, dtype=float).reshape(-1)
    if np.any(~np.isfinite(p) | (p < 0) | (p > 1)):
        raise ConfigError(f"p-values must lie in [0, 1], got {p.tolist()}")
    m, order = len(p), np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])  # (m - i) * p_(i), running max
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted.tolist()


# ---------------------------------------------------------------- power


def power_paired_t(effect_size: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test with n pairs when the true d_z is effect_size.

    Under the alternative t follows the noncentral t with df=n-1, nc=d_z*sqrt(n).

    Example:
        >>> round(power_paired_t(0.5, 34), 3)
        0.808
    """
    df, nc = n - 1, abs(effect_size) * math.sqrt(n)
    crit = st.t.ppf(1 - alpha / 2, df)
    # lower tail P(T <= -crit | nc) as P(T >= crit | -nc): scipy's nct.cdf gives nan far out
    return float(st.nct.sf(crit, df, nc) + st.nct.sf(crit, df, -nc))


def smallest_p(n: int, test: str = "t") -> float:
    """The smallest two-sided p-value a test can give with n pairs (exact distribution).

    The t-test has none (0.0); the exact Wilcoxon signed-rank test gives at least 2 / 2**n,
    reached when all n differences have the same sign.

    Example:
        >>> smallest_p(5, "wilcoxon"), smallest_p(6, "wilcoxon"), smallest_p(2, "t")
        (0.0625, 0.03125, 0.0)
    """
    if test not in TESTS:
        raise ConfigError(f"test={test!r} is not known; choose one of {sorted(TESTS)}")
    return 2.0 / 2.0 ** n if test == "wilcoxon" else 0.0


def wilcoxon_min_seeds(alpha: float = 0.05) -> int:
    """Fewest pairs with which the exact two-sided Wilcoxon test can give p < alpha (2/2**n < alpha).

    Example:
        >>> wilcoxon_min_seeds(0.05), wilcoxon_min_seeds(0.05 / 7)
        (6, 9)
    """
    alpha, n = _fraction(alpha, "alpha"), 1
    while smallest_p(n, "wilcoxon") >= alpha:
        n += 1
    return n


def seeds_needed(effect_size: float, alpha: float = 0.05, power: float = 0.8,
                 max_n: int = 10000, *, comparisons: int = 1, test: str = "t") -> Optional[int]:
    """Smallest n >= 2 at which the paired t-test reaches `power` for true d_z = effect_size.

    ``comparisons`` (m, the arms compared with the baseline) makes the per-comparison level
    alpha / m: Bonferroni, the conservative bound for the first step of Holm's correction, so
    with m > 1 the count is an upper-side estimate. With ``test="wilcoxon"`` the answer is
    also at least ``wilcoxon_min_seeds(alpha / m)``, since no fewer pairs can give the exact
    test's p below that level; otherwise the t-test's power stands in for the Wilcoxon
    test's (an approximation: its efficiency relative to the t-test is about 0.95 for normal
    differences). None when the effect is 0 or nan, or more than max_n seeds would be needed.

    Example:
        >>> seeds_needed(0.5), seeds_needed(1.0), seeds_needed(0.0)
        (34, 10, None)
        >>> seeds_needed(1.0, comparisons=7), seeds_needed(3.0, test="wilcoxon")
        (17, 6)
    """
    alpha, power = _fraction(alpha, "alpha"), _fraction(power, "power")
    if not (isinstance(comparisons, int) and comparisons >= 1):
        raise ConfigError(f"comparisons={comparisons!r} must be a whole number >= 1")
    if test not in TESTS:
        raise ConfigError(f"test={test!r} is not known; choose one of {sorted(TESTS)}")
    if math.isnan(effect_size) or effect_size == 0 or max_n < 2:
        return None
    alpha /= comparisons
    floor = wilcoxon_min_seeds(alpha) if test == "wilcoxon" else 2
    if floor > max_n:
        return None
    if math.isinf(effect_size):
        return floor
    enough = lambda n: power_paired_t(effect_size, n, alpha) >= power  # noqa: E731; rises with n
    if not enough(max_n):
        return None
    low, high = 1, 2  # invariant: not enough(low) (n=1 has no test), enough(high)
    while not enough(high):
        low, high = high, min(2 * high, max_n)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return max(high, floor)


# ---------------------------------------------------------------- verdicts


def _decimals(paired: Paired, scale: float) -> int:
    """Decimals that show the interval's half-width to about two significant figures."""
    size = abs(paired.ci_high - paired.ci_low) / 2 * scale or abs(paired.mean_diff) * scale
    return 2 if not size or not math.isfinite(size) else int(min(6, max(0, 1 - math.floor(math.log10(size)))))


def _p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3g}"


def _level_text(alpha: float, comparisons: int) -> str:
    return f" at alpha={alpha:g}/{comparisons}" if comparisons > 1 else ""


def _needed_text(n: int, d_z: float, needed: Optional[int], power: float, max_n: int, *,
                 alpha: float = 0.05, comparisons: int = 1, test: str = "t") -> tuple[str, Optional[int]]:
    """The "no detectable difference" text and the seed count it reports (never <= n)."""
    head = f"no detectable difference at {n} seeds"
    floor = wilcoxon_min_seeds(alpha / comparisons) if test == "wilcoxon" else 2
    if floor > n:  # no outcome of these n pairs could have been significant
        p_min = smallest_p(n, test) * comparisons
        what = f"after Holm over {comparisons} comparisons " if comparisons > 1 else ""
        head += (f": Wilcoxon cannot reach p<{alpha:g} {what}with {n} seeds (smallest possible "
                 f"{'adjusted ' if comparisons > 1 else ''}p={min(p_min, 1.0):.3g}); "
                 f"use at least {floor} seeds or the t-test")
    head += f" (observed d_z={d_z:.2f}; "
    if d_z == 0 or math.isnan(d_z):
        return head + "no difference to detect)", None
    if needed is None:
        return head + f"more than {max_n} seeds would be needed to detect it with {power:.0%} power" \
            f"{_level_text(alpha, comparisons)})", None
    if needed <= n:  # the observed effect would be detectable, yet this sample was not
        return head + f"at the edge of detection with {n} seeds: at least {n + 1} seeds would be " \
            "needed to detect it reliably)", n + 1
    return head + f"about {needed} seeds would be needed to detect it with {power:.0%} power" \
        f"{_level_text(alpha, comparisons)})", needed


def verdict(paired: Paired, p_adjusted: float, alpha: float = 0.05,
            higher_is_better: Optional[bool] = None, *, scale: float = 1.0, unit: str = "",
            power: float = 0.8, adjustment: str = "Holm", max_n: int = 10000,
            comparisons: int = 1, test: Optional[str] = None) -> Verdict:
    """Better or worse when p_adjusted < alpha (by the sign of the mean difference), else
    "no detectable difference" with the seeds needed for the observed d_z.

    ``higher_is_better`` None takes the paired comparison's; ``scale`` and ``unit`` only
    format the text (scale=100, unit="points" shows accuracy in points). ``comparisons`` is
    the number of arms that p_adjusted was corrected over and ``test`` (None: the paired
    comparison's) the test used; both go to :func:`seeds_needed`. A "no detectable
    difference" verdict never reports n or fewer seeds as needed: when the calculation says
    the n seeds run would do (the observed effect sits at the edge of detection), it says so
    and reports n + 1. When the Wilcoxon test cannot reach significance with n pairs at all
    (2/2**n >= alpha / comparisons) the text says so.

    Example:
        >>> p = paired_comparison([0.93, 0.925, 0.95, 0.91, 0.94], [0.90, 0.91, 0.92, 0.90, 0.91])
        >>> verdict(p, holm([p.p_value, 0.2])[0], scale=100, unit="points").text
        'better by +2.3 points (95% CI +1.1 to +3.5), p=0.0124 (Holm)'
        >>> w = paired_comparison([0.10, 0.12], [0.95, 0.95], test="wilcoxon")
        >>> print(verdict(w, w.p_value).text)  # doctest: +NORMALIZE_WHITESPACE
        no detectable difference at 2 seeds: Wilcoxon cannot reach p<0.05 with 2 seeds
        (smallest possible p=0.5); use at least 6 seeds or the t-test (observed d_z=-59.40;
        about 6 seeds would be needed to detect it with 80% power)
    """
    higher = paired.higher_is_better if higher_is_better is None else higher_is_better
    test = paired.test if test is None else test
    needed = seeds_needed(paired.effect_size, alpha, power, max_n, comparisons=comparisons, test=test)
    if not (p_adjusted < _fraction(alpha, "alpha")) or paired.mean_diff == 0:
        text, needed = _needed_text(paired.n, paired.effect_size, needed, power, max_n, alpha=alpha,
                                    comparisons=comparisons, test=test)
        return Verdict("no detectable difference", text, needed)
    label = "better" if (paired.mean_diff > 0) == higher else "worse"
    k, u = _decimals(paired, scale), f" {unit}" if unit else ""
    diff, low, high = (v * scale for v in (paired.mean_diff, paired.ci_low, paired.ci_high))
    text = (f"{label} by {diff:+.{k}f}{u} ({paired.confidence:.0%} CI {low:+.{k}f} to {high:+.{k}f}), "
            f"{_p_text(p_adjusted)}" + (f" ({adjustment})" if adjustment else ""))
    return Verdict(label, text, needed)


def compare_arms(results: dict[str, Sequence[float]], baseline: str, *, test: str = "t",
                 alpha: float = 0.05, higher_is_better: bool = True, scale: float = 1.0,
                 unit: str = "", confidence: float = 0.95) -> list[dict[str, Any]]:
    """Every arm against the baseline, Holm-adjusted across arms, as plain dicts.

    Rows: the baseline first ({"arm", "baseline": True, "summary"}), then one per other arm
    in the given order with "paired", "p_adjusted" and "verdict" added.
    """
    if baseline not in results:
        raise ConfigError(f"baseline={baseline!r} is not an arm; choose one of {sorted(results)}")
    others = [a for a in results if a != baseline]
    paired = [paired_comparison(results[a], results[baseline], test=test, confidence=confidence,
                                higher_is_better=higher_is_better) for a in others]
    rows = [dict(arm=baseline, baseline=True, summary=asdict(summarize(results[baseline], confidence)))]
    for arm, p, p_adj in zip(others, paired, holm([p.p_value for p in paired])):
        v = verdict(p, p_adj, alpha, higher_is_better, scale=scale, unit=unit,
                    comparisons=len(paired), test=test)
        rows.append(dict(arm=arm, baseline=False, summary=asdict(summarize(results[arm], confidence)),
                         paired=asdict(p), p_adjusted=p_adj, verdict=asdict(v)))
    return rows


# ---------------------------------------------------------------- run metrics


def _column(history: Sequence[dict], metric: str) -> list[float]:
    if not history:
        raise ConfigError("history is empty: no epoch was recorded")
    if metric not in history[-1]:
        raise ConfigError(f"metric={metric!r} is not in the history; choose one of {sorted(history[-1])}")
    return [float(e[metric]) for e in history]


def _mode(mode: str) -> str:
    if mode not in ("max", "min"):
        raise ConfigError(f"mode={mode!r} is not known; choose one of ['max', 'min']")
    return mode


def epochs_to_reach(history: Sequence[dict], metric: str = "val_accuracy", *, target: float,
                    mode: str = "max") -> Optional[int]:
    """The first epoch whose metric reaches target (>= for mode "max", <= for "min"), else None.

    Example:
        >>> h = [dict(epoch=1, val_accuracy=0.8), dict(epoch=2, val_accuracy=0.95)]
        >>> epochs_to_reach(h, target=0.9), epochs_to_reach(h, target=0.99)
        (2, None)
    """
    values, sign = _column(history, metric), 1.0 if _mode(mode) == "max" else -1.0
    return next((int(e["epoch"]) for e, v in zip(history, values) if sign * v >= sign * target), None)


def gap_source(history: Sequence[dict]) -> str:
    """The train column the final gap uses: ``train_eval_accuracy`` (the training set measured
    in evaluation mode at the epoch end: dropout off, batch norm in inference mode) when the
    last epoch has a finite one, else ``train_accuracy`` (a running average over the epoch
    with dropout on: not a fair gap; older studies, or training.train_eval_size=0).

    Example:
        >>> gap_source([dict(train_accuracy=0.9, train_eval_accuracy=0.95, val_accuracy=0.9)])
        'train_eval_accuracy'
        >>> gap_source([dict(train_accuracy=0.9, train_eval_accuracy=float("nan"), val_accuracy=0.9)])
        'train_accuracy'
    """
    if not history:
        raise ConfigError("history is empty: no epoch was recorded")
    v = history[-1].get("train_eval_accuracy")
    return "train_eval_accuracy" if isinstance(v, (int, float)) and math.isfinite(v) else "train_accuracy"


def final_gap(history: Sequence[dict]) -> float:
    """Train minus validation accuracy at the last epoch (positive: the model overfits); train
    is ``train_eval_accuracy`` where measured, else ``train_accuracy`` (see gap_source).

    Example:
        >>> round(final_gap([dict(epoch=1, train_accuracy=0.99, val_accuracy=0.95)]), 4)
        0.04
        >>> round(final_gap([dict(epoch=1, train_accuracy=0.90, train_eval_accuracy=0.99, val_accuracy=0.95)]), 4)
        0.04
    """
    return _column(history, gap_source(history))[-1] - _column(history, "val_accuracy")[-1]


def learn_threshold(chance: float) -> float:
    """The best validation accuracy a run must exceed to count as having learned:
    ``chance + max(0.05, 0.1 * (1 - chance))`` (chance = 1 / num_classes). With 10 classes
    that is 0.19; with 2 classes 0.55.

    Example:
        >>> round(learn_threshold(0.1), 4), round(learn_threshold(0.5), 4)
        (0.19, 0.55)
    """
    if not 0.0 < chance < 1.0:
        raise ConfigError(f"chance={chance!r} must lie strictly between 0 and 1")
    return chance + max(0.05, 0.1 * (1.0 - chance))


def learned(best_val_accuracy: Optional[float], chance: Optional[float]) -> bool:
    """Whether a best validation accuracy is more than a margin above chance (see
    learn_threshold); an unknown chance (None) counts as learned, a missing or nan accuracy
    as not learned. The one definition used for the gap verdicts and the automatic target.

    Example:
        >>> learned(0.11, 0.1), learned(0.93, 0.1), learned(0.93, None), learned(None, 0.1)
        (False, True, True, False)
    """
    if best_val_accuracy is None or not math.isfinite(float(best_val_accuracy)):
        return False
    return chance is None or float(best_val_accuracy) > learn_threshold(chance)


def fisher_divergence(arm_diverged: int, arm_runs: int, base_diverged: int, base_runs: int) -> float:
    """Two-sided Fisher exact p of diverged vs not diverged, arm against baseline
    (``scipy.stats.fisher_exact`` on [[arm diverged, arm not], [base diverged, base not]]).

    Example:
        >>> round(fisher_divergence(0, 5, 5, 5), 5)
        0.00794
    """
    for name, d, n in (("arm", arm_diverged, arm_runs), ("baseline", base_diverged, base_runs)):
        if not 0 <= d <= n:
            raise ConfigError(f"{name} diverged={d} of runs={n}; allowed: 0 <= diverged <= runs")
    table = [[arm_diverged, arm_runs - arm_diverged], [base_diverged, base_runs - base_diverged]]
    return float(st.fisher_exact(table, alternative="two-sided").pvalue)


def best_value(history: Sequence[dict], metric: str = "val_accuracy", mode: str = "max") -> float:
    """The best finite value of a metric over the epochs (nan when none is finite).

    Example:
        >>> best_value([dict(val_loss=0.5), dict(val_loss=0.3), dict(val_loss=float("nan"))],
        ...            "val_loss", "min")
        0.3
    """
    values = [v for v in _column(history, metric) if math.isfinite(v)]
    if not values:
        return math.nan
    return max(values) if _mode(mode) == "max" else min(values)
