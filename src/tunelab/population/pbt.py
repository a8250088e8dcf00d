"""Population-based training (Jaderberg et al. 2017): exploit and explore, as pure functions.

Every ``interval`` epochs the members are ranked on a metric; each member of the bottom quantile
copies a random member of the top quantile (weights, optimizer state, schedule state: done by
``train_population``) and then explores: each searched hyperparameter is resampled from its
distribution with probability ``resample``, else perturbed by a factor drawn from ``factors`` in
the space where its distribution is uniform (a log range multiplies the value, ``one_minus_log``
multiplies 1 - x, a uniform or int range multiplies the value; a choice moves to a neighbouring
choice), clipped to its range. Only hyperparameters a member can change while it trains are
allowed (``PER_MEMBER``).

Example:
    >>> import numpy as np
    >>> plan([0.9, 0.5, 0.7, 0.2], 0.25, np.random.default_rng(0))
    [(3, 0)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tunelab.errors import ConfigError
from tunelab.search.distributions import Dist

__all__ = ["PBTConfig", "PER_MEMBER", "plan", "explore", "check_space", "value_of"]

# what a member's optimizer and dropout read as per-member tensors: changeable while it trains
PER_MEMBER = ("optimizer.lr", "optimizer.momentum", "optimizer.weight_decay", "optimizer.eps", "optimizer.rho",
              "optimizer.alpha", "model.dropout")


@dataclass(frozen=True)
class PBTConfig:
    """When and how members exploit and explore; ``space`` maps each searched key to its Dist."""

    space: dict
    interval: int = 4
    quantile: float = 0.25
    factors: tuple = (0.8, 1.2)
    resample: float = 0.25
    metric: str = "val_accuracy"
    seed: int = 0

    @property
    def maximize(self) -> bool:
        return "loss" not in self.metric


def value_of(cfg: Any, key: str) -> Any:
    """The value of dotted ``key`` in a config (``optimizer.lr``).

    Example:
        >>> from tunelab.config import from_dict
        >>> value_of(from_dict({"optimizer": {"lr": 0.5}}), "optimizer.lr")
        0.5
    """
    out = cfg
    for part in key.split("."):
        out = getattr(out, part)
    return out


def check_space(keys: Sequence[str]) -> None:
    """Refuse a key a member cannot change mid-run (one line naming it and what is allowed).

    Example:
        >>> check_space(["optimizer.lr", "model.dropout"])
        >>> check_space(["model.hidden"])
        Traceback (most recent call last):
        ...
        tunelab.errors.ConfigError: space.model.hidden cannot change while a member trains (population-based training); allowed: ['model.dropout', 'optimizer.alpha', 'optimizer.eps', 'optimizer.lr', 'optimizer.momentum', 'optimizer.rho', 'optimizer.weight_decay']
    """
    for key in keys:
        if key not in PER_MEMBER:
            raise ConfigError(f"space.{key} cannot change while a member trains (population-based training); "
                              f"allowed: {sorted(PER_MEMBER)}")


def plan(scores: Sequence[float], quantile: float, rng: np.random.Generator,
         maximize: bool = True) -> list[tuple[int, int]]:
    """(member that copies, member copied) pairs: each of the bottom ``quantile`` copies a random
    member of the top ``quantile`` (at least one each when there are two members or more); a
    non-finite score ranks last."""
    n = len(scores)
    k = max(1, int(math.floor(n * quantile))) if n >= 2 else 0
    if k == 0:
        return []
    sign = 1.0 if maximize else -1.0
    key = [sign * s if math.isfinite(s) else -math.inf for s in scores]
    order = sorted(range(n), key=lambda i: key[i], reverse=True)  # best first; ties by position
    top, bottom = order[:k], order[n - k:]
    return [(dst, int(top[rng.integers(len(top))])) for dst in bottom]


def _perturb(dist: Dist, value: Any, factor: float) -> Any:
    if factor == 1.0:
        return value
    if dist.kind == "choice":
        i = list(dist.choices).index(value) if value in dist.choices else 0
        j = min(max(i + (1 if factor > 1 else -1), 0), len(dist.choices) - 1)
        return dist.choices[j]
    lo, hi = dist.t_bounds()
    if dist.kind in ("uniform", "int"):
        t = dist.to_t(value) * factor
    else:  # log_uniform, log_int: x * f; one_minus_log: (1 - x) * f, in the log space where it is uniform
        t = dist.to_t(value) + math.log(factor)
    x = dist.from_t(min(max(t, lo), hi))
    return int(round(x)) if dist.kind in ("int", "log_int") else float(x)


def explore(values: dict[str, Any], cfg: PBTConfig, rng: np.random.Generator) -> dict[str, Any]:
    """New values for a member that copied one with ``values``.

    Example:
        >>> import numpy as np
        >>> from tunelab.search.distributions import parse_dist
        >>> cfg = PBTConfig({"optimizer.lr": parse_dist("optimizer.lr", {"log_uniform": [1e-4, 1e-1]})},
        ...                 resample=0.0, factors=(1.2,))
        >>> round(explore({"optimizer.lr": 0.01}, cfg, np.random.default_rng(0))["optimizer.lr"], 6)
        0.012
    """
    out = {}
    for key, value in values.items():
        dist = cfg.space[key]
        if rng.random() < cfg.resample:
            out[key] = dist.sample(rng)
        else:
            out[key] = _perturb(dist, value, float(cfg.factors[rng.integers(len(cfg.factors))]))
        if isinstance(out[key], np.generic):
            out[key] = out[key].item()
    return out
