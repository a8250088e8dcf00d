"""Factorial effects from runs: marginal means per factor level and two-way interactions.

A run is a dict ``{factor: level, ..., "value": float}``; a cell (one combination of
levels) may hold several seeds. Everything is computed from the cell means, so every cell
weighs the same however many seeds it kept: an unbalanced design (a diverged seed dropped)
does not mix one factor's effect into another's. A cell with no run at all (every seed
diverged) is not averaged around: a main effect compares its levels only where the other
factors' levels hold a cell for every one of them, and names the cells it left out.

Example:
    >>> runs = [dict(bn=b, wd=w, value=0.90 + 0.04 * b + 0.01 * w) for b in (0, 1) for w in (0, 1)]
    >>> round(main_effects(runs, ["bn", "wd"])["bn"].effect, 4), round(interactions(runs, "bn", "wd").strength, 9)
    (0.04, 0.0)
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Hashable, Optional, Sequence

import numpy as np

from tunelab.errors import ConfigError

__all__ = ["MainEffect", "Interaction", "cell_means", "main_effects", "interactions"]


@dataclass(frozen=True)
class MainEffect:
    """Marginal mean of each level (mean of its cell means) and effect = max - min of them.

    Balanced: only the combinations of the other factors' levels that hold a cell for every
    level of this factor count; ``left_out`` are the cells (levels in ``factors`` order) that
    were present but left out for that reason. ``effect`` is nan and ``means`` empty when no
    combination is complete.
    """

    means: dict[Hashable, float]
    effect: float
    left_out: tuple[tuple, ...] = ()


@dataclass(frozen=True)
class Interaction:
    """Cell means of two factors and how far they are from additive.

    ``strength`` is the residual sd of the cell means after the additive fit, over the
    interaction degrees of freedom ((I-1)(J-1) on a full grid); on a 2x2 it equals
    ``|contrast|`` with ``contrast = (m11 - m10 - m01 + m00) / 2`` (levels in ``levels``
    order, the second level is "1"). nan when the cells leave no degree of freedom.
    """

    factors: tuple[str, str]
    levels: tuple[list[Hashable], list[Hashable]]
    means: dict[tuple[Hashable, Hashable], float]
    strength: float
    contrast: Optional[float]


def _ordered(levels: list[Hashable]) -> list[Hashable]:
    """Sorted when the levels compare (numbers, strings), else in order of appearance."""
    try:
        return sorted(levels)
    except TypeError:
        return levels


def cell_means(runs: Sequence[dict[str, Any]], factors: Sequence[str]) -> dict[tuple, float]:
    """Mean "value" of each combination of levels of `factors` present in the runs.

    Example:
        >>> cell_means([dict(a=1, value=2.0), dict(a=1, value=4.0), dict(a=2, value=5.0)], ["a"])
        {(1,): 3.0, (2,): 5.0}
    """
    if not runs or not factors:
        raise ConfigError("factorial effects need at least one run and one factor")
    cells: dict[tuple, list[float]] = defaultdict(list)
    for run in runs:
        missing = [k for k in (*factors, "value") if k not in run]
        if missing:
            raise ConfigError(f"run {run!r} lacks {missing}; every run needs each factor and 'value'")
        if not math.isfinite(float(run["value"])):
            raise ConfigError(f"run {run!r} has a non-finite value; drop failed runs first")
        try:
            cells[tuple(run[f] for f in factors)].append(float(run["value"]))
        except TypeError:
            raise ConfigError(f"levels must be hashable (e.g. str of a list), got {run!r}") from None
    return {cell: float(np.mean(v)) for cell, v in cells.items()}


def main_effects(runs: Sequence[dict[str, Any]], factors: Sequence[str]) -> dict[str, MainEffect]:
    """Per factor: the marginal mean of each level and the effect (max - min of them), over
    the combinations of the other factors present at every level of it (balanced).

    Example:
        >>> runs = [dict(a=a, b=b, value=a + 10 * b) for a in (0, 1, 2) for b in (0, 1)]
        >>> e = main_effects(runs, ["a", "b"])
        >>> e["a"].means, e["a"].effect, e["b"].effect
        ({0: 5.0, 1: 6.0, 2: 7.0}, 2.0, 10.0)
        >>> e = main_effects([r for r in runs if (r["a"], r["b"]) != (2, 1)], ["a", "b"])
        >>> e["a"].means, e["b"].means, e["b"].left_out
        ({0: 0.0, 1: 1.0, 2: 2.0}, {0: 0.5, 1: 10.5}, ((2, 0),))
    """
    cells = cell_means(runs, factors)
    out = {}
    for i, factor in enumerate(factors):
        levels = _ordered(list({cell[i]: 0 for cell in cells}))
        groups: dict[tuple, dict[Hashable, tuple]] = defaultdict(dict)  # other levels -> level -> cell
        for cell in cells:
            groups[cell[:i] + cell[i + 1:]][cell[i]] = cell
        complete = [g for g in groups.values() if len(g) == len(levels)]
        left_out = tuple(c for g in groups.values() if len(g) < len(levels) for c in g.values())
        means = {level: float(np.mean([cells[g[level]] for g in complete])) for level in levels} if complete else {}
        effect = max(means.values()) - min(means.values()) if means else math.nan
        out[factor] = MainEffect(means, effect, left_out)
    return out


def _additive_residuals(cells: dict[tuple, float], l1: list, l2: list) -> tuple[np.ndarray, int]:
    """Residuals of the least-squares fit mean_ij = mu + a_i + b_j over the present cells."""
    keys = list(cells)
    x = np.zeros((len(keys), 1 + len(l1) + len(l2)))  # (cells, intercept + one-hot rows + cols)
    for r, (a, b) in enumerate(keys):
        x[r, [0, 1 + l1.index(a), 1 + len(l1) + l2.index(b)]] = 1.0
    y = np.array([cells[k] for k in keys])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return y - x @ coef, len(keys) - int(np.linalg.matrix_rank(x))


def interactions(runs: Sequence[dict[str, Any]], f1: str, f2: str) -> Interaction:
    """Cell means of f1 x f2 and the interaction strength (0 when the effects add up).

    Example:
        >>> runs = [dict(a=a, b=b, value=a + b + 2 * a * b) for a in (0, 1) for b in (0, 1)]
        >>> i = interactions(runs, "a", "b")
        >>> i.means[(1, 1)], i.contrast, i.strength
        (4.0, 1.0, 1.0)
    """
    if f1 == f2:
        raise ConfigError(f"an interaction needs two different factors, got {f1!r} twice")
    cells = cell_means(runs, [f1, f2])
    l1, l2 = _ordered(list({a: 0 for a, _ in cells})), _ordered(list({b: 0 for _, b in cells}))
    residuals, dof = _additive_residuals(cells, l1, l2)
    strength = math.sqrt(float(residuals @ residuals) / dof) if dof > 0 else math.nan
    contrast = None
    if len(l1) == len(l2) == 2 and len(cells) == 4:
        m = lambda i, j: cells[(l1[i], l2[j])]  # noqa: E731
        contrast = (m(1, 1) - m(1, 0) - m(0, 1) + m(0, 0)) / 2
    means = {(a, b): cells[(a, b)] for a in l1 for b in l2 if (a, b) in cells}
    return Interaction((f1, f2), (l1, l2), means, strength, contrast)
