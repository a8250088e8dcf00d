"""SearchSpace: dotted config keys -> distributions, parsed and validated once at load.

A space file names a base train config, the objective, the distributions and, optionally,
stages (groups of keys tuned in turn, by priority). Every sampled value is checked against
RunConfig at load (each choice, each range end), so a space that loads yields valid configs.

Example:
    >>> import numpy as np
    >>> space = SearchSpace.from_dict({"space": {"optimizer.lr": {"log_uniform": [1e-4, 0.1]},
    ...                                          "model.hidden": {"choice": [[64], [128, 64]]}}})
    >>> sorted(space.optuna_params())
    ['model.hidden', 'optimizer.lr']
    >>> values = space.decode({"optimizer.lr": 0.01, "model.hidden": "[64]"})
    >>> space.apply(space.base, values)["model"]["hidden"]
    [64]
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import optuna.distributions as od

from tunelab.config import from_dict as config_from_dict
from tunelab.config import to_dict as config_to_dict
from tunelab.config import follow_optimizer_name
from tunelab.errors import ConfigError
from tunelab.search.distributions import Dist, parse_dist, show
from tunelab.search.paths import check_path, set_path

__all__ = ["OBJECTIVE_METRICS", "SearchSpace", "apply_values"]

OBJECTIVE_METRICS = ("val_accuracy", "val_loss", "train_loss", "train_accuracy", "train_eval_loss",
                     "train_eval_accuracy")
TOP_KEYS = ("base", "objective", "space", "stages")


@dataclass(frozen=True)
class SearchSpace:
    """Distributions over dotted config keys, on top of a base config (a plain dict).

    ``base`` is the user's config dict as written (validated, not resolved), so that defaults
    which depend on a searched key (the lr of ``optimizer.name``) resolve after sampling.
    """

    base: dict
    params: dict[str, Dist]
    objective_metric: str = "val_accuracy"
    direction: str = "maximize"
    stages: list[list[str]] = field(default_factory=list)
    validate_config: bool = True

    @classmethod
    def load(cls, path: str | Path, *, validate_config: bool = True) -> SearchSpace:
        """Read a space YAML file; a ``base`` path is looked up beside it first, then in cwd."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"space file {str(p)!r} does not exist")
        return cls.from_dict(_read_yaml(p, "space file"), p.parent, validate_config=validate_config)

    @classmethod
    def from_dict(cls, raw: dict, root: str | Path | None = None, *,
                  validate_config: bool = True) -> SearchSpace:
        """Build from a dict with the space file's keys; ``validate_config=False`` allows any
        base dict and free-form dotted keys (for user objectives), still checking distributions."""
        if not isinstance(raw, dict):
            raise ConfigError(f"space={show(raw)} must be a mapping with keys {list(TOP_KEYS)}")
        for k in raw:
            if k not in TOP_KEYS:
                raise ConfigError(f"{k!r} is not a top-level key of a space file; allowed: {list(TOP_KEYS)}")
        root = Path(root) if root is not None else Path.cwd()
        base = _load_base(raw.get("base"), root, validate_config)
        metric, direction = _parse_objective(raw.get("objective"), validate_config)
        params = _parse_params(raw.get("space"), base, validate_config)
        stages = _parse_stages(raw.get("stages"), list(params))
        if validate_config:
            _check_validation(base, params)
        return cls(base, params, metric, direction, stages, validate_config)

    # ---------------------------------------------------------------- Optuna's view
    def keys(self) -> list[str]:
        return list(self.params)

    def param_name(self, key: str) -> str:
        """Optuna's name of ``key``: ``1-<key>`` for one_minus_log (what is sampled), else key."""
        return "1-" + key if self._dist(key).kind == "one_minus_log" else key

    def key_of(self, name: str) -> str | None:
        """The space key of an Optuna param name, or None when it is not in the space."""
        if name.startswith("1-") and name[2:] in self.params:
            return name[2:] if self.params[name[2:]].kind == "one_minus_log" else None
        dist = self.params.get(name)
        return name if dist is not None and dist.kind != "one_minus_log" else None

    def to_optuna(self, key: str) -> od.BaseDistribution:
        """Optuna's distribution of ``key`` (under the name ``param_name(key)``)."""
        return self._dist(key).optuna()

    def optuna_params(self, keys: Sequence[str] | None = None) -> dict[str, od.BaseDistribution]:
        """Param name -> Optuna distribution for ``keys`` (default: all)."""
        return {self.param_name(k): self.to_optuna(k) for k in self._keys(keys)}

    def encode(self, values: dict[str, Any]) -> dict[str, Any]:
        """Config key/values -> Optuna param names/values (e.g. for ``study.enqueue_trial``)."""
        return {self.param_name(k): self._dist(k).encode(v) for k, v in values.items()}

    def decode(self, optuna_params: dict[str, Any]) -> dict[str, Any]:
        """Optuna param names/values -> config key/values; names not in the space pass through."""
        out = {}
        for name, v in optuna_params.items():
            key = self.key_of(name)
            out[name if key is None else key] = v if key is None else self.params[key].decode(v)
        return out

    # ---------------------------------------------------------------- configs
    def apply(self, base: dict | None, values: dict[str, Any]) -> dict:
        """``base`` (default: the space's) with the dotted keys set; a resolved, validated dict."""
        return apply_values(self.base if base is None else base, values, self.validate_config)

    def sample(self, rng: np.random.Generator, keys: Sequence[str] | None = None) -> dict[str, Any]:
        """Config values drawn directly from the distributions of ``keys`` (default: all)."""
        return {k: self.params[k].sample(rng) for k in self._keys(keys)}

    def to_dict(self) -> dict[str, Any]:
        """The space-file form (base inline), e.g. to store beside a study."""
        return {"base": copy.deepcopy(self.base),
                "objective": {"metric": self.objective_metric, "direction": self.direction},
                "space": {k: d.to_json() for k, d in self.params.items()},
                "stages": [list(s) for s in self.stages]}

    def _dist(self, key: str) -> Dist:
        if key not in self.params:
            raise ConfigError(f"{key!r} is not a key of this space; space keys: {self.keys()}")
        return self.params[key]

    def _keys(self, keys: Sequence[str] | None) -> list[str]:
        if keys is None:
            return self.keys()
        return [k for k in keys if self._dist(k) is not None]  # _dist raises on unknown keys


def apply_values(base: dict, values: dict[str, Any], validate: bool = True) -> dict:
    """A copy of ``base`` with dotted ``values`` set; validated and resolved when ``validate``.

    Example:
        >>> apply_values({}, {"training.epochs": 3})["training"]["epochs"]
        3
    """
    tree = copy.deepcopy(base) if base else {}
    needs_lists = validate and any(p.isdigit() for k in values for p in k.split("."))
    fallback = config_to_dict(config_from_dict(base)) if needs_lists else None
    before = copy.deepcopy(tree.get("optimizer"))
    for key, value in values.items():
        set_path(tree, key, copy.deepcopy(value), fallback)
    if "optimizer.name" in values:
        follow_optimizer_name(before, tree.get("optimizer"),
                              [k.split(".", 1)[1] for k in values if k.startswith("optimizer.")])
    return config_to_dict(config_from_dict(tree)) if validate else tree


# -------------------------------------------------------------------- parsing the file

def _read_yaml(path: Path, what: str) -> dict:
    from tunelab.config import read_yaml

    return read_yaml(path, what)


def _load_base(raw: Any, root: Path, validate: bool) -> dict:
    if raw is None:
        base: dict = {}
    elif isinstance(raw, str):
        candidates = [root / raw, Path.cwd() / raw]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ConfigError(f"base={raw!r} does not exist; looked in {[str(c) for c in candidates]}")
        base = _read_yaml(found, "base config")
    elif isinstance(raw, dict):
        base = copy.deepcopy(raw)
    else:
        raise ConfigError(f"base={show(raw)} must be a config file path or a mapping of sections")
    if validate:
        try:
            config_from_dict(base)
        except ConfigError as e:
            raise ConfigError(f"base: {e}") from None
    return base


def _parse_objective(raw: Any, validate: bool) -> tuple[str, str]:
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"objective={show(raw)} must be a mapping like "
                          "{metric: val_accuracy, direction: maximize}")
    for k in raw:
        if k not in ("metric", "direction"):
            raise ConfigError(f"objective.{k} is not an objective key; allowed: ['direction', 'metric']")
    metric = raw.get("metric", "val_accuracy")
    if isinstance(metric, str) and metric.startswith("test"):
        raise ConfigError(f"objective.metric={metric!r} is not allowed: the test set is read once "
                          "at the end; it is never the objective")
    if not isinstance(metric, str) or not metric or (validate and metric not in OBJECTIVE_METRICS):
        raise ConfigError(f"objective.metric={metric!r} is not allowed; choose one of "
                          f"{sorted(OBJECTIVE_METRICS)}")
    natural = "minimize" if "loss" in metric else "maximize"
    direction = raw.get("direction", natural)
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"objective.direction={direction!r} is not allowed; choose maximize or minimize")
    if validate and direction != natural:
        raise ConfigError(f"objective.direction={direction!r} does not fit objective.metric="
                          f"{metric!r}; a loss is minimized and an accuracy maximized")
    return metric, direction


def _parse_params(raw: Any, base: dict, validate: bool) -> dict[str, Dist]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"space={show(raw)} must map at least one dotted config key to a "
                          "distribution, e.g. optimizer.lr: {log_uniform: [1e-4, 0.1]}")
    params = {}
    for key, spec in raw.items():
        if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"space key {key!r} must be a dotted config key like optimizer.lr")
        params[key] = parse_dist(key, spec)
    _check_overlaps(list(params))
    if validate:
        resolved = config_to_dict(config_from_dict(base))
        for key, dist in params.items():
            check_path(key, resolved)
            _check_values(key, dist, base)
    return params


def _check_validation(base: dict, params: dict[str, Dist]) -> None:
    """A search chooses on the validation set: data.val_fraction=0 (none) is refused."""
    dist = params.get("data.val_fraction")
    if dist is not None and 0 in ([*dist.choices] if dist.kind == "choice" else [dist.low]):
        raise ConfigError("space.data.val_fraction may be 0, which leaves no validation set to choose on; "
                          "allowed: values > 0")
    if dist is None and config_from_dict(base).data.val_fraction == 0:
        raise ConfigError("base: data.val_fraction=0 leaves no validation set, and a search chooses on "
                          "validation; allowed: data.val_fraction > 0 (the test set is never searched on)")


def _check_overlaps(keys: list[str]) -> None:
    for a in keys:
        for b in keys:
            if b.startswith(a + "."):
                raise ConfigError(f"space.{b} lies inside space.{a}; search one or the other")


def _check_values(key: str, dist: Dist, base: dict) -> None:
    """Every choice and both range ends must make a valid config (checked one key at a time)."""
    values = list(dist.choices) if dist.kind == "choice" else [dist.low, dist.high]
    for v in values:
        try:
            applied = apply_values(base, {key: v})
        except ConfigError as e:
            raise ConfigError(f"space.{key}: {dist.kind} value {show(v)} is rejected by the "
                              f"config: {e}") from None
        if applied["training"]["device"] == "cuda" and not _cuda_here():  # every such trial would fail
            what = (f"space.{key}: {dist.kind} value {show(v)}" if key == "training.device"
                    else "base: training.device='cuda'")
            raise ConfigError(f"{what} trains on cuda, and no CUDA device is available here; "
                              f"allowed: training.device cpu or auto")


def _cuda_here() -> bool:
    import torch

    return torch.cuda.is_available()


def _parse_stages(raw: Any, keys: list[str]) -> list[list[str]]:
    if raw is None:
        return [list(keys)]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"stages={show(raw)} must be a non-empty list of lists of space keys")
    seen: dict[str, int] = {}
    for i, stage in enumerate(raw):
        if not isinstance(stage, list) or not stage:
            raise ConfigError(f"stages[{i}]={show(stage)} must be a non-empty list of space keys")
        for k in stage:
            if k not in keys:
                raise ConfigError(f"stages[{i}]: {k!r} is not a space key; space keys: {keys}")
            if k in seen:
                raise ConfigError(f"stages[{i}]: {k!r} is already in stages[{seen[k]}]; "
                                  "each space key belongs to exactly one stage")
            seen[k] = i
    missing = [k for k in keys if k not in seen]
    if missing:
        raise ConfigError(f"stages: space key {missing[0]!r} is in no stage; every space key "
                          "must be in exactly one stage")
    return [list(s) for s in raw]
