"""Coarse-to-fine: rounds of random search, each inside the region where the best trials lie.

Round ``r`` covers trial numbers ``[r * round_size, (r + 1) * round_size)``. Round 0 samples the
whole space. Later rounds keep the best ``ceil(keep * round_size)`` complete trials of all
earlier rounds (the top ``keep`` fraction of a round's worth) and narrow each numeric range to
those trials' span plus ``margin`` of it on each side (at least ``MIN_WIDTH`` of the original),
in the space where the kind is uniform (log for log kinds, log(1 - x) for one_minus_log), clipped
to the original range; a choice keeps only the values the kept trials used. The ranges are a
pure function of the trial records (``round_ranges``); the sampler stores each round's ranges in
the study (user attribute ``c2f_round_<r>``) when the round starts, and every worker reuses them.

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
    [5.0, 0.56, 0.25]
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from tunelab.errors import ConfigError
from tunelab.search.distributions import INT_KINDS, Dist, parse_dist
from tunelab.search.space import SearchSpace

__all__ = ["CoarseToFineSampler", "MIN_WIDTH", "round_ranges", "stored_rounds"]

MIN_WIDTH = 0.05  # a narrowed range spans at least this fraction of the original (in t)
_ATTR = "c2f_round_{}"


def round_ranges(space: SearchSpace, trials: Sequence[FrozenTrial], direction: Any,
                 round_index: int, round_size: int, keep: float = 0.25,
                 margin: float = 0.1) -> dict[str, Dist]:
    """The ranges (narrowed Dists) of round ``round_index``, from the trial records alone.

    Only COMPLETE trials numbered before the round count. A key is narrowed when at least two
    kept trials set it; otherwise it keeps the previous round's range.
    ``direction``: "maximize"/"minimize" or an ``optuna.study.StudyDirection``.
    """
    ranges = dict(space.params)
    for r in range(1, round_index + 1):
        kept = _kept_values(space, trials, _maximize(direction), r * round_size, round_size, keep)
        for key, dist in space.params.items():
            values = [v[key] for v in kept if key in v]
            narrowed = _narrow(dist, values, margin) if len(values) >= 2 else None
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


def _kept_values(space: SearchSpace, trials: Sequence[FrozenTrial], maximize: bool,
                 before: int, round_size: int, keep: float) -> list[dict[str, Any]]:
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.number < before
            and t.value is not None and math.isfinite(t.value)]
    done.sort(key=lambda t: (-t.value if maximize else t.value, t.number))
    # keep a round's worth: with a fraction of *all* earlier trials the kept set would grow
    # each round and reach back into the coarse rounds, and the ranges would stop shrinking
    n_keep = math.ceil(keep * min(len(done), round_size))
    return [space.decode(t.params) for t in done[:n_keep]]


def _narrow(dist: Dist, values: list[Any], margin: float) -> Dist | None:
    """``dist`` narrowed to ``values`` (None when they say nothing: fall back to the previous)."""
    if dist.kind == "choice":
        used = {json.dumps(v, sort_keys=True) for v in values}
        kept = [c for c in dist.choices if json.dumps(c, sort_keys=True) in used]
        return dist.keep_choices(kept) if kept else None
    t0, t1 = dist.t_bounds()
    ts = [dist.to_t(v) for v in values if dist.low <= v <= dist.high]
    if len(ts) < 2:
        return None
    lo, hi = min(ts), max(ts)
    pad = max(margin * (hi - lo), (MIN_WIDTH * (t1 - t0) - (hi - lo)) / 2, 0.0)
    a, b = sorted((dist.from_t(max(t0, lo - pad)), dist.from_t(min(t1, hi + pad))))
    if dist.kind in INT_KINDS:
        a, b = math.floor(a + 1e-9), math.ceil(b - 1e-9)
    return dist.narrow(min(max(a, dist.low), dist.high), max(min(b, dist.high), dist.low))


class CoarseToFineSampler(optuna.samplers.BaseSampler):
    """Random search in rounds whose ranges shrink around the best trials so far.

    Params the space does not know are sampled by a RandomSampler.
    """

    def __init__(self, space: SearchSpace, round_size: int, keep: float = 0.25,
                 margin: float = 0.1, seed: int | None = None) -> None:
        if not isinstance(round_size, int) or isinstance(round_size, bool) or round_size < 1:
            raise ConfigError(f"round_size={round_size!r} must be an integer >= 1")
        if not 0 < keep <= 1:
            raise ConfigError(f"keep={keep!r} must be in (0, 1]; it is the fraction of trials kept")
        if not margin >= 0:
            raise ConfigError(f"margin={margin!r} must be >= 0")
        self.space, self.round_size, self.keep, self.margin = space, round_size, keep, margin
        self._rng = np.random.default_rng(seed)
        self._fallback = optuna.samplers.RandomSampler(seed=seed)
        self._cache: dict[tuple[str, int, int], dict[str, Dist]] = {}  # (study, id, round) -> ranges

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._fallback.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.ranges(study, trial.number // self.round_size)  # a round starts: fix its ranges

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        key = self.space.key_of(param_name)
        if key is not None:
            dist = self.ranges(study, trial.number // self.round_size)[key]
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


def _fit(value: Any, distribution: BaseDistribution) -> Any:
    """``value`` clipped into a numeric distribution; None when a choice is not offered."""
    if isinstance(distribution, CategoricalDistribution):
        return value if value in distribution.choices else None
    return type(value)(min(max(value, distribution.low), distribution.high))
