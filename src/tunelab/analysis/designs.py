"""Compare designs: arms around a base config, one at a time or full factorial.

Example:
    >>> arms = one_at_a_time({"model": {"dropout": 0.0}}, [("model.dropout", [0.0, 0.2, 0.5])])
    >>> [a.name for a in arms]
    ['baseline', 'model.dropout=0.2', 'model.dropout=0.5']
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import yaml

from tunelab.errors import ConfigError

__all__ = ["Arm", "parse_vary", "one_at_a_time", "factorial", "arm_config", "get_key", "merge_baseline_equal"]


@dataclass(frozen=True)
class Arm:
    """One configuration of a compare: ``overrides`` (dotted key -> value) on the base."""

    name: str
    overrides: dict[str, Any]
    levels: dict[str, Any] = field(default_factory=dict)  # the value of every varied key
    baseline: bool = False


def parse_vary(text: str) -> tuple[str, list[Any]]:
    """``model.dropout=0,0.2,0.5`` or ``model.hidden=[64],[128,64]`` -> (key, values); one value
    (``optimizer.lr=0.003``) is one arm against the baseline.

    Example:
        >>> parse_vary("optimizer.lr=0.003")
        ('optimizer.lr', [0.003])
    """
    if "=" not in text:
        raise ConfigError(f"--vary {text!r} must look like key.path=value1,value2")
    key, values = (part.strip() for part in text.split("=", 1))
    from tunelab.config import YAMLBudgetError, load_yaml_text

    try:
        parsed = load_yaml_text(f"[{values}]")
    except YAMLBudgetError as e:
        raise ConfigError(f"--vary {key}: the values are refused: {e}") from None
    except yaml.YAMLError:
        raise ConfigError(f"--vary {text[:80]!r}: the values are not a YAML list") from None
    if not key or len(parsed) < 1:
        raise ConfigError(f"--vary {text!r} needs a key and at least one value")
    if len({json.dumps(v, sort_keys=True) for v in parsed}) != len(parsed):
        raise ConfigError(f"--vary {text!r} repeats a value")
    return key, parsed


def get_key(cfg: dict, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node.get(part) if isinstance(node, dict) else None
    return node


def _label(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value) if isinstance(value, (list, dict)) else value}"


def one_at_a_time(base: dict, varies: Sequence[tuple[str, list[Any]]]) -> list[Arm]:
    """The base config, then one arm per other value of each varied key."""
    levels = {k: get_key(base, k) for k, _ in varies}
    arms = [Arm("baseline", {}, levels, baseline=True)]
    for key, values in varies:
        for v in values:
            if v != levels[key]:
                arms.append(Arm(_label(key, v), {key: v}, {**levels, key: v}))
    return arms


def factorial(base: dict, varies: Sequence[tuple[str, list[Any]]]) -> list[Arm]:
    """Every combination; the baseline is the cell equal to the base config (else the first)."""
    keys = [k for k, _ in varies]
    cells = list(itertools.product(*[vals for _, vals in varies]))
    base_cell = tuple(get_key(base, k) for k in keys)
    first = base_cell if base_cell in cells else cells[0]
    arms = []
    for cell in [first] + [c for c in cells if c != first]:
        levels = dict(zip(keys, cell))
        name = "baseline" if cell == first else ", ".join(_label(k, v) for k, v in levels.items())
        arms.append(Arm(name, levels, levels, baseline=cell == first))
    return arms


def arm_config(base: dict, arm: Arm, seed: int) -> dict:
    """The validated, resolved train config of one arm at one seed."""
    from tunelab.config import from_dict, to_dict

    raw = copy.deepcopy(base)
    overrides = [f"{k}={json.dumps(v)}" for k, v in arm.overrides.items()] + [f"training.seed={seed}"]
    return to_dict(from_dict(raw, overrides))


def merge_baseline_equal(base: dict, arms: Sequence[Arm]) -> tuple[list[Arm], list[str]]:
    """``arms`` without those whose resolved config is the baseline's, however written (a dotted key
    at its default, a whole section spelling out the base's values): they are the baseline, run once
    and not counted in the correction. Returns (arms kept, names merged).

    Example:
        >>> arms = one_at_a_time({}, [("optimizer", [{"name": "adam", "lr": 0.001}, {"name": "sgd"}])])
        >>> kept, merged = merge_baseline_equal({}, arms)
        >>> [a.name for a in kept], merged
        (['baseline', 'optimizer={"name": "sgd"}'], ['optimizer={"name": "adam", "lr": 0.001}'])
    """
    baseline = next(a for a in arms if a.baseline)
    same = arm_config(base, baseline, 0)
    kept, merged = [], []
    for arm in arms:
        if not arm.baseline and arm_config(base, arm, 0) == same:
            merged.append(arm.name)
        else:
            kept.append(arm)
    return kept, merged
