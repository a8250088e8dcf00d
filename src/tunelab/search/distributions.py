"""Distributions of a search space: parse, sample, and map to and from Optuna's parameters.

A space file writes one as ``{kind: [low, high]}`` (plus ``points: N`` for the grid sampler)
or ``{choice: [...]}``. Each numeric kind is uniform in a *transform* of its value (``t``):
the value itself (uniform, int), its log (log_uniform, log_int) or log(1 - x) (one_minus_log,
so 0.9..0.99 and 0.99..0.999 are equally likely). Coarse-to-fine narrows ranges in ``t``.

Example:
    >>> import numpy as np
    >>> d = parse_dist("optimizer.momentum", {"one_minus_log": [0.9, 0.999]})
    >>> 0.9 <= d.sample(np.random.default_rng(0)) <= 0.999
    True
    >>> d.encode(0.99) == 1 - 0.99, d.optuna().log
    (True, True)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna.distributions as od

from tunelab.errors import ConfigError

__all__ = ["KINDS", "Dist", "parse_dist", "show"]

FLOAT_KINDS = ("uniform", "log_uniform", "one_minus_log")
INT_KINDS = ("int", "log_int")
KINDS = tuple(sorted(FLOAT_KINDS + INT_KINDS + ("choice",)))
_SCALARS = (bool, int, float, str)


@dataclass(frozen=True)
class Dist:
    """One parameter's distribution: a numeric range ``[low, high]`` or a list of choices."""

    kind: str
    low: Any = None  # float or int; None for a choice
    high: Any = None
    choices: tuple = ()
    points: int | None = None

    @property
    def encoded(self) -> bool:
        """True when Optuna sees the choices as JSON strings (some choice is not a scalar)."""
        return self.kind == "choice" and not all(c is None or isinstance(c, _SCALARS)
                                                 for c in self.choices)

    # ---------------------------------------------------------------- transform space
    def to_t(self, x: float) -> float:
        """The value in the space where this kind is uniform."""
        if self.kind in ("log_uniform", "log_int"):
            return math.log(x)
        return math.log1p(-x) if self.kind == "one_minus_log" else float(x)

    def from_t(self, t: float) -> float:
        if self.kind in ("log_uniform", "log_int"):
            return math.exp(t)
        return -math.expm1(t) if self.kind == "one_minus_log" else t

    def t_bounds(self) -> tuple[float, float]:
        return tuple(sorted((self.to_t(self.low), self.to_t(self.high))))  # type: ignore[return-value]

    # ---------------------------------------------------------------- sampling
    def sample(self, rng: np.random.Generator, size: int | None = None) -> Any:
        """One value (``size=None``) or an array / list of ``size`` values, in config space."""
        if self.kind == "choice":
            idx = rng.integers(len(self.choices), size=size)
            pick = lambda i: copy.deepcopy(self.choices[int(i)])  # noqa: E731
            return pick(idx) if size is None else [pick(i) for i in idx]
        if self.kind == "int":
            out = rng.integers(int(self.low), int(self.high) + 1, size=size)
        elif self.kind == "log_int":  # as Optuna: log-uniform on [low - 0.5, high + 0.5], rounded
            t = rng.uniform(math.log(self.low - 0.5), math.log(self.high + 0.5), size=size)
            out = np.clip(np.rint(np.exp(t)), self.low, self.high).astype(np.int64)
        else:
            t0, t1 = self.t_bounds()
            t = rng.uniform(t0, t1, size=size)
            x = t if self.kind == "uniform" else (
                np.exp(t) if self.kind == "log_uniform" else -np.expm1(t))
            out = np.clip(x, self.low, self.high)
        return out.item() if size is None else out

    # ---------------------------------------------------------------- Optuna
    def optuna(self) -> od.BaseDistribution:
        """The Optuna distribution (one_minus_log samples u = 1 - x, log-uniformly)."""
        if self.kind == "choice":
            return od.CategoricalDistribution([self.encode(c) for c in self.choices])
        if self.kind in INT_KINDS:
            return od.IntDistribution(int(self.low), int(self.high), log=self.kind == "log_int")
        if self.kind == "one_minus_log":
            return od.FloatDistribution(1.0 - self.high, 1.0 - self.low, log=True)
        return od.FloatDistribution(self.low, self.high, log=self.kind == "log_uniform")

    def encode(self, x: Any) -> Any:
        """Config value -> Optuna value."""
        if self.kind == "choice":
            return json.dumps(x, sort_keys=True) if self.encoded else x
        if self.kind in INT_KINDS:
            return int(x)
        return 1.0 - float(x) if self.kind == "one_minus_log" else float(x)

    def decode(self, v: Any) -> Any:
        """Optuna value -> config value."""
        if self.kind == "choice":
            return json.loads(v) if self.encoded else v
        if self.kind in INT_KINDS:
            return int(v)
        return 1.0 - float(v) if self.kind == "one_minus_log" else float(v)

    def optuna_grid(self, key: str) -> list[Any]:
        """Grid values in Optuna space: choices, all integers, or ``points`` spaced in ``t``."""
        if self.kind == "choice":
            return [self.encode(c) for c in self.choices]
        if self.kind in INT_KINDS and self.points is None:
            return list(range(int(self.low), int(self.high) + 1))
        if self.points is None:
            raise ConfigError(f"space.{key}: the grid sampler needs `points: N` for a continuous "
                              f"range; got {self.kind} {show([self.low, self.high])} without points")
        o = self.optuna()
        spaced = (np.geomspace if o.log else np.linspace)(o.low, o.high, self.points)
        if self.kind in INT_KINDS:
            return sorted({int(v) for v in np.clip(np.rint(spaced), o.low, o.high)})
        return [float(v) for v in np.clip(spaced, o.low, o.high)]

    # ---------------------------------------------------------------- narrowing and output
    def narrow(self, low: float, high: float) -> Dist:
        return dataclasses.replace(self, low=low, high=high)

    def keep_choices(self, values: list[Any]) -> Dist:
        return dataclasses.replace(self, choices=tuple(values))

    def to_json(self) -> dict[str, Any]:
        """The space-file form, e.g. ``{"log_uniform": [0.0001, 0.1]}``."""
        if self.kind == "choice":
            return {"choice": copy.deepcopy(list(self.choices))}
        out: dict[str, Any] = {self.kind: [self.low, self.high]}
        return out if self.points is None else {**out, "points": self.points}


def show(value: Any) -> str:
    """A value as the user wrote it in YAML: ``[0, 0.1]``, ``1e-4`` (no quotes on numbers)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, str) and _number(value) is not None:
        return value
    return repr(value)


def _number(v: Any) -> float | None:
    """A finite float from an int, float or numeric string (PyYAML reads 1e-3 as a string)."""
    if isinstance(v, bool):
        return None
    try:
        f = float(v) if isinstance(v, (int, float, str)) else None
    except ValueError:
        return None
    return f if f is not None and math.isfinite(f) else None


def parse_dist(key: str, raw: Any) -> Dist:
    """Validate one space entry ``raw`` for config key ``key``; raise ConfigError naming both."""
    where = f"space.{key}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}={show(raw)} must be a mapping like {{log_uniform: [1e-4, 0.1]}}")
    kinds = [k for k in raw if k != "points"]
    if len(kinds) != 1 or kinds[0] not in KINDS:
        bad = next((k for k in kinds if k not in KINDS), None)
        what = f"{bad!r} is not a distribution kind" if bad is not None else \
            f"needs exactly one distribution kind, got {kinds}"
        raise ConfigError(f"{where}: {what}; choose one of {list(KINDS)}")
    kind, args = kinds[0], raw[kinds[0]]
    if kind == "choice":
        return _parse_choice(where, args, raw)
    low, high = _parse_range(where, kind, args)
    return Dist(kind, low, high, points=_parse_points(where, raw.get("points")))


def _parse_choice(where: str, args: Any, raw: dict) -> Dist:
    if not isinstance(args, list) or not args:
        raise ConfigError(f"{where}: choice needs a non-empty list of values, got {show(args)}")
    if "points" in raw:
        raise ConfigError(f"{where}: points={show(raw['points'])} applies to numeric ranges, not choice")
    texts = [json.dumps(c, sort_keys=True) for c in args]
    if len(set(texts)) != len(texts):
        raise ConfigError(f"{where}: choice {show(args)} repeats a value; list each value once")
    return Dist("choice", choices=tuple(args))


def _parse_range(where: str, kind: str, args: Any) -> tuple[Any, Any]:
    shape = "two integers [low, high]" if kind in INT_KINDS else "two numbers [low, high]"
    if not isinstance(args, list) or len(args) != 2:
        raise ConfigError(f"{where}: {kind} needs {shape}, got {show(args)}")
    if kind in INT_KINDS:
        if not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            raise ConfigError(f"{where}: {kind} needs {shape}, got {show(args)}")
        low, high = args
    else:
        low, high = _number(args[0]), _number(args[1])
        if low is None or high is None:
            raise ConfigError(f"{where}: {kind} needs {shape} (finite), got {show(args)}")
    _check_bounds(where, kind, args, low, high)
    return low, high


def _check_bounds(where: str, kind: str, args: list, low: float, high: float) -> None:
    text = f"{where}: {kind} range {show(args)}"
    if kind == "log_uniform" and min(low, high) <= 0:
        how = "touches" if min(low, high) == 0 else "crosses"
        raise ConfigError(f"{text} {how} 0; both ends must be > 0")
    if kind == "log_int" and min(low, high) < 1:
        raise ConfigError(f"{text} goes below 1; log_int needs 1 <= low <= high")
    if kind == "one_minus_log" and not (0 <= low < 1 and 0 <= high < 1):
        raise ConfigError(f"{text} leaves [0, 1); one_minus_log needs 0 <= low < high < 1")
    empty = low > high if kind in INT_KINDS else low >= high
    if empty:
        need = "low <= high" if kind in INT_KINDS else "low < high"
        raise ConfigError(f"{text} is empty; need {need}")


def _parse_points(where: str, points: Any) -> int | None:
    if points is None:
        return None
    if not isinstance(points, int) or isinstance(points, bool) or points < 2:
        raise ConfigError(f"{where}: points={show(points)} must be an integer >= 2")
    return points
