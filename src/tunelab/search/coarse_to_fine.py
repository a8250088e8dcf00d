"""Coarse-to-fine: rounds of random search, each inside the region where the best trials lie.

Round ``r`` covers trial numbers ``[r * round_size, (r + 1) * round_size)``. Round 0 samples the
whole space. Each later round keeps the best ``max(2, ceil(keep * round_size))`` complete trials of
all earlier rounds (the top ``keep`` fraction of a round's worth) and narrows each numeric range
to those trials' span plus ``margin`` of it on each side, in the space where the kind is uniform
(log for log kinds, log(1 - x) for one_minus_log), clipped to the original range. Four rules keep
the search from collapsing or losing its way:

- the incumbent (the best trial so far) is always inside the next round's region;
- when the best trial so far was drawn in the last round, a range whose end it reached (within
  ``EDGE`` of that range's width, an end the original range does not share) is reopened half that
  width beyond: the search ran into the wall of its own region, and the optimum may lie past it;
- a range never shrinks below ``MIN_WIDTH`` of the original, and an int range never below the
  incumbent's neighbours (one step each side); a choice keeps at least two values (the kept
  trials' values, plus the best other value tried);
- a configuration already in the study is not proposed again (up to ``TRIES`` draws in the
  region, then in the whole space).

Inside a refined round each trial starts from one of the kept trials (the better ranked, the more
often: weight 1/rank) and draws each numeric value uniformly within the round's range width around
that trial's value (in the range's transform, clipped to the range); a choice keeps the trial's
value, or with probability 1/(number of parameters) takes any value the round allows. The region
is where the search goes; the kept trials say where in it to look first. A fraction ``explore``
of every refined round (evenly spread trials) samples the whole space instead, so a region fixed
from a few early trials can still move to a better one found outside it.
The ranges are a pure function of the trial records (``round_ranges``); the sampler stores each
round's ranges in the study (user attribute ``c2f_round_<r>``) when the round starts, and every
worker reuses them. ``auto_round_size`` picks the round size from the budget and the number of
parameters. Measured on tabular benchmarks (docs/benchmarks.md): better than random search
everywhere, behind TPE on most.

Example:
    >>> import optuna
    >>> from tunelab.search.space import SearchSpace
    >>> space = SearchSpace.from_dict({"space": {"optimizer.lr": {"log_uniform": [1e-5, 1.0]}}})
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study(sampler=CoarseToFineSampler(space, round_size=10, seed=0))
    >>> study.optimize(lambda t: abs(math.log10(t.suggest_float("optimizer.lr", 1e-5, 1.0,
    ...                log=True)) + 2.5), n_trials=30)
    >>> ranges = [r["optimizer.lr"]["log_uniform"] for r in stored_rounds(study)]
    >>> [round(math.log10(hi / lo), 2) for lo, hi in ranges]  # width in decades, per round
    [5.0, 0.56, 0.47]
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from tunelab.errors import ConfigError
from tunelab.search.distributions import INT_KINDS, Dist, parse_dist
from tunelab.search.space import SearchSpace

__all__ = ["CoarseToFineSampler", "MIN_WIDTH", "EDGE", "TRIES", "auto_round_size", "round_ranges",
           "stored_rounds"]

MIN_WIDTH = 0.05  # a narrowed range spans at least this fraction of the original (in t)
EDGE = 0.1  # a best value this close to an end of the last round's range (in its width) reopens it
TRIES = 64  # draws in the region before a duplicate gives way to the whole space
_ATTR = "c2f_round_{}"


def auto_round_size(trials: int, n_params: int) -> int:
    """The round size for a budget of ``trials`` over ``n_params`` parameters: about five rounds
    (measured best for 100 trials, docs/benchmarks.md), each of at least two trials per parameter
    plus two, and at least 8.

    Example:
        >>> auto_round_size(100, 5), auto_round_size(40, 1), auto_round_size(40, 9)
        (20, 8, 20)
    """
    return max(8, 2 * (n_params + 1), trials // 5)


def round_ranges(space: SearchSpace, trials: Sequence[FrozenTrial], direction: Any,
                 round_index: int, round_size: int, keep: float = 0.25,
                 margin: float = 0.1) -> dict[str, Dist]:
    """The ranges (narrowed Dists) of round ``round_index``, from the trial records alone.

    Only COMPLETE trials numbered before the round count. A key is narrowed when at least two
    kept trials set it; otherwise it keeps the previous round's range.
    ``direction``: "maximize"/"minimize" or an ``optuna.study.StudyDirection``.
    """
    ranges = dict(space.params)
    maximize = _maximize(direction)
    for r in range(1, round_index + 1):
        ranked = _ranked(space, trials, maximize, r * round_size)
        done = [v for _, v in ranked]
        kept = done[:_n_kept(keep, len(done), round_size, len(space.params))]
        # the best trial was drawn inside the last round's range: it may have run into its wall
        walled = r > 1 and bool(ranked) and ranked[0][0] >= (r - 1) * round_size
        for key, dist in space.params.items():
            values = [v[key] for v in kept if key in v]
            if len(values) < 2:
                continue
            if dist.kind == "choice":
                narrowed = _narrow_choice(dist, values, [v[key] for v in done if key in v])
            else:
                narrowed = _narrow(dist, values, margin, ranges[key] if walled else None)
            ranges[key] = ranges[key] if narrowed is None else narrowed
    return ranges


def stored_rounds(study: optuna.Study) -> list[dict[str, Any]]:
    """Each started round's ranges as stored in the study, in space-file form, round 0 first."""
    attrs = study.user_attrs
    found = {int(m.group(1)): v for k, v in attrs.items() if (m := re.fullmatch(r"c2f_round_(\d+)", k))}
    return [found[r] for r in sorted(found)]


def _maximize(direction: Any) -> bool:
    name = getattr(direction, "name", direction)
    if str(name).lower() not in ("maximize", "minimize"):
        raise ConfigError(f"direction={direction!r} is not allowed; choose maximize or minimize")
    return str(name).lower() == "maximize"


def _ranked(space: SearchSpace, trials: Sequence[FrozenTrial], maximize: bool,
            before: int) -> list[tuple[int, dict[str, Any]]]:
    """(number, config values) of the complete trials numbered before ``before``, best first."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.number < before
            and t.value is not None and math.isfinite(t.value)]
    done.sort(key=lambda t: (-t.value if maximize else t.value, t.number))
    return [(t.number, space.decode(t.params)) for t in done]


def _n_kept(keep: float, done: int, round_size: int, n_params: int) -> int:
    """How many of the best trials set the next region: ``keep`` of a round's worth, and at least
    one more than the number of parameters (fewer points cannot span the space's dimensions)."""
    return max(math.ceil(keep * min(done, round_size)), n_params + 1)


def _narrow_choice(dist: Dist, values: list[Any], ranked: list[Any]) -> Dist | None:
    """The choices the kept trials used, plus the best other value tried when they used one."""
    key = lambda v: json.dumps(v, sort_keys=True)  # noqa: E731
    used = {key(v) for v in values}
    if len(used) < 2:
        other = next((v for v in ranked if key(v) not in used), None)
        if other is None:
            return None  # nothing else was tried: the previous range stands
        used.add(key(other))
    kept = [c for c in dist.choices if key(c) in used]
    return dist.keep_choices(kept) if kept else None


def _narrow(dist: Dist, values: list[Any], margin: float, previous: Dist | None) -> Dist | None:
    """``dist`` narrowed to ``values`` (best first; None when they say nothing), reopened beyond
    ``previous`` (the last round's range, where the best was drawn) on a side whose end it reached."""
    t0, t1 = dist.t_bounds()
    inside = [v for v in values if dist.low <= v <= dist.high]
    if len(inside) < 2:
        return None
    ts = [dist.to_t(v) for v in inside]
    best = dist.to_t(values[0]) if dist.low <= values[0] <= dist.high else ts[0]
    lo, hi = min(ts), max(ts)
    pad = max(margin * (hi - lo), (MIN_WIDTH * (t1 - t0) - (hi - lo)) / 2, 0.0)
    lo, hi = lo - pad, hi + pad
    pa, pb = previous.t_bounds() if previous is not None else (t0, t1)
    width, eps = pb - pa, 1e-12 * max(1.0, abs(t1 - t0))
    if pa > t0 + eps and best - pa <= EDGE * width:  # the search ran into its own wall: reopen it
        lo = min(lo, pa - width / 2)
    if pb < t1 - eps and pb - best <= EDGE * width:
        hi = max(hi, pb + width / 2)
    a, b = sorted((dist.from_t(max(t0, lo)), dist.from_t(min(t1, hi))))
    if dist.kind in INT_KINDS:  # whole numbers, and never narrower than the incumbent's neighbours
        inc = int(round(dist.from_t(best)))
        a, b = min(math.floor(a + 1e-9), inc - 1), max(math.ceil(b - 1e-9), inc + 1)
    return dist.narrow(min(max(a, dist.low), dist.high), max(min(b, dist.high), dist.low))


class CoarseToFineSampler(optuna.samplers.BaseSampler):
    """Random search in rounds whose ranges shrink around the best trials so far (see the module
    docstring). The space's parameters are drawn together (so a duplicate can be refused); params
    the space does not know, or asked with another distribution, are sampled by a RandomSampler.
    """

    def __init__(self, space: SearchSpace, round_size: int, keep: float = 0.25,
                 margin: float = 0.1, explore: float = 0.1, seed: int | None = None) -> None:
        if not isinstance(round_size, int) or isinstance(round_size, bool) or round_size < 1:
            raise ConfigError(f"round_size={round_size!r} must be an integer >= 1")
        if not 0 < keep <= 1:
            raise ConfigError(f"keep={keep!r} must be in (0, 1]; it is the fraction of trials kept")
        if not margin >= 0:
            raise ConfigError(f"margin={margin!r} must be >= 0")
        if not 0 <= explore < 1:
            raise ConfigError(f"explore={explore!r} must be in [0, 1); it is the fraction of a round "
                              f"that samples the whole space")
        self.space, self.round_size, self.keep, self.margin = space, round_size, keep, margin
        self.explore = explore
        self._rng = np.random.default_rng(seed)
        self._fallback = optuna.samplers.RandomSampler(seed=seed)
        self._cache: dict[tuple[str, int, int], dict[str, Dist]] = {}  # (study, id, round) -> ranges

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._fallback.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        """The space's params that the study's trials were asked with the space's distribution
        (drawn together, so a duplicate can be refused); the others go to ``sample_independent``."""
        self._raise_error_if_multi_objective(study)
        asked = optuna.search_space.intersection_search_space(
            study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        own = self.space.optuna_params()
        return {n: d for n, d in asked.items() if own.get(n) == d}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        r = trial.number // self.round_size
        ranges = self.ranges(study, r)
        centres = [] if r == 0 or self.exploring(trial.number) else self._kept(study, r)
        seen = {_config_key(t.params) for t in study.get_trials(deepcopy=False)
                if t.number != trial.number and t.params}
        own = self.space.optuna_params()
        keys = [k for k in self.space.params
                if own[self.space.param_name(k)] == search_space.get(self.space.param_name(k))]
        others = {n: d for n, d in search_space.items() if own.get(n) != d}
        if not keys:
            return {n: self.sample_independent(study, trial, n, d) for n, d in others.items()}
        for i in range(3 * TRIES):  # near the kept trials, then anywhere in the region, then the space
            if i < TRIES and centres:
                values = self._near(centres, ranges, keys)
            else:
                region = ranges if i < 2 * TRIES else self.space.params
                values = {k: region[k].sample(self._rng) for k in keys}
            encoded = {**self.space.encode(values),
                       **{n: self.sample_independent(study, trial, n, d) for n, d in others.items()}}
            if _config_key(encoded) not in seen:
                break
        return encoded

    def _kept(self, study: optuna.Study, r: int) -> list[dict[str, Any]]:
        done = _ranked(self.space, study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                       _maximize(study.direction), r * self.round_size)
        return [v for _, v in done[:_n_kept(self.keep, len(done), self.round_size, len(self.space.params))]]

    def _near(self, centres: list[dict[str, Any]], ranges: dict[str, Dist], keys: list[str]) -> dict[str, Any]:
        """Values near one kept trial (weight 1/rank): each numeric value uniform within the
        range's width around the trial's, a choice changed with probability 1/len(keys)."""
        weights = 1.0 / np.arange(1, len(centres) + 1)
        centre = centres[self._rng.choice(len(centres), p=weights / weights.sum())]
        out = {}
        for key in keys:
            region, x = ranges[key], centre.get(key)
            if x is None or region.kind == "choice":
                keep = x is not None and self._rng.random() >= 1.0 / len(keys)
                out[key] = x if keep and x in region.choices else region.sample(self._rng)
                continue
            a, b = region.t_bounds()
            t = region.to_t(min(max(x, region.low), region.high))
            lo, hi = max(a, t - (b - a) / 2), min(b, t + (b - a) / 2)
            v = region.from_t(self._rng.uniform(lo, hi))
            if region.kind in INT_KINDS:
                v = int(round(v))
            out[key] = min(max(v, region.low), region.high)
        return out

    def exploring(self, number: int) -> bool:
        """Whether trial ``number`` samples the whole space (the ``explore`` share of a refined round)."""
        r, i = divmod(number, self.round_size)
        return r > 0 and math.floor((i + 1) * self.explore) > math.floor(i * self.explore)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._raise_error_if_multi_objective(study)
        self.ranges(study, trial.number // self.round_size)  # a round starts: fix its ranges

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        self._raise_error_if_multi_objective(study)
        key = self.space.key_of(param_name)
        if key is not None:  # asked with another distribution than the space's: sample in both
            dist = self.ranges(study, trial.number // self.round_size)[key]
            for _ in range(TRIES):
                value = _fit(self.space.params[key].encode(dist.sample(self._rng)), param_distribution)
                if value is not None:
                    return value
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def ranges(self, study: optuna.Study, round_index: int) -> dict[str, Dist]:
        """The ranges of a round: cached, else as stored in the study, else computed and stored."""
        cache_key = (study.study_name, study._study_id, round_index)
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        stored = study.user_attrs.get(_ATTR.format(round_index))
        if stored is not None:
            ranges = {**self.space.params, **{k: parse_dist(k, v) for k, v in stored.items()
                                              if k in self.space.params}}
        else:
            trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            ranges = round_ranges(self.space, trials, study.direction, round_index,
                                  self.round_size, self.keep, self.margin)
            study.set_user_attr(_ATTR.format(round_index), {k: d.to_json() for k, d in ranges.items()})
        self._cache[cache_key] = ranges
        return ranges


def _config_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _fit(value: Any, distribution: BaseDistribution) -> Any:
    """``value`` as a value of ``distribution`` (on its ``step`` grid, of its type), or None when
    it is not one (outside the range, not among the choices)."""
    if isinstance(distribution, CategoricalDistribution):
        return value if any(value == c and type(value) is type(c) for c in distribution.choices) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if distribution.step is not None:
        value = distribution.low + round((value - distribution.low) / distribution.step) * distribution.step
    value = int(round(value)) if isinstance(distribution, IntDistribution) else float(value)
    return value if distribution.low <= value <= distribution.high else None
