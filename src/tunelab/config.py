"""RunConfig: one training run, fully specified, parsed and validated once at the edge.

A config is a tree of frozen dataclasses. Every field has a default; YAML files, dicts and
dotted overrides (``optimizer.lr=3e-4``) are parsed by ``load_config`` / ``from_dict``, which
reject unknown keys, wrong types and out-of-range values with one line naming the key, the
bad value and what is allowed.

Example:
    >>> from tunelab.config import from_dict
    >>> cfg = from_dict({"optimizer": {"name": "sgd", "lr": 0.1}}, overrides=["training.epochs=3"])
    >>> cfg.training.epochs, cfg.optimizer.lr
    (3, 0.1)
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import yaml

from tunelab.errors import ConfigError

__all__ = [
    "DataConfig", "ModelConfig", "OptimizerConfig", "ScheduleConfig", "EarlyStoppingConfig",
    "TrainingConfig", "CheckpointConfig", "AugmentConfig", "RunConfig", "from_dict", "load_config", "to_dict",
    "dump_config", "parse_override", "replace", "read_yaml", "UniqueKeyLoader", "load_yaml_text", "YAMLBudgetError",
]


def opt(default: Any, doc: str = "", *, lo: float | None = None, hi: float | None = None,
        lo_open: bool = False, hi_open: bool = False, choices: Sequence[Any] | None = None,
        registry: str | None = None) -> Any:
    """A dataclass field with validation metadata (range, fixed choices or a registry)."""
    meta = dict(doc=doc, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open, choices=choices,
                registry=registry)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    if dataclasses.is_dataclass(default):
        return field(default_factory=lambda: dataclasses.replace(default), metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------- sections

@dataclass(frozen=True)
class DataConfig:
    name: str = opt("digits", "dataset", registry="tunelab.data.sources:DATASETS")
    dir: Optional[str] = opt(None, "data directory (default: $TUNELAB_DATA or ~/.cache/tunelab)")
    path: Optional[str] = opt(None, "file for the csv and npz sources; folder of class subfolders for images")
    target: str = opt("label", "target column of a csv file")
    val_fraction: float = opt(0.1, "fraction of the training set held out for validation "
                              "(0: none; early stopping, plateau on validation and search then refuse)",
                              lo=0.0, hi=1.0, hi_open=True)
    test_fraction: float = opt(0.2, "fraction held out as test set where the source has none",
                               lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    split_seed: int = opt(0, "seed of the validation/test split", lo=0)
    scaling: str = opt("unit", "unit: pixels/255 (0-1); standardize: z-score fitted on train; none",
                       choices=["none", "unit", "standardize"])
    train_size: Optional[int] = opt(None, "use only this many training examples", lo=1)
    image_size: int = opt(28, "images source: side in pixels every image is resized to", lo=1, hi=1024)
    color: str = opt("auto", "images source: grayscale, rgb, or auto (rgb when any image has color)",
                     choices=["auto", "grayscale", "rgb"])


@dataclass(frozen=True)
class ModelConfig:
    name: str = opt("mlp", "architecture", registry="tunelab.nn.models:MODELS")
    hidden: list[int] = opt([256, 128], "mlp hidden widths (depth = length); cnn head widths")
    channels: list[int] = opt([16, 32], "cnn channels per conv block")
    kernel_size: Union[int, list[int]] = opt(3, "cnn kernel size (one for all blocks, or one per block)", lo=1)
    stride: Union[int, list[int]] = opt(1, "cnn stride (one for all blocks, or one per block)", lo=1)
    padding: Optional[Union[int, list[int]]] = opt(None, "cnn padding (null: kernel_size // 2; one, or one per block)",
                                                   lo=0)
    pool: str = opt("max", "cnn pooling after each block", choices=["max", "avg", "none"])
    activation: str = opt("relu", "hidden activation", registry="tunelab.nn.activations:ACTIVATIONS")
    init: str = opt("he_normal", "weight initialization", registry="tunelab.nn.init:INITS")
    init_std: float = opt(0.01, "std of the 'normal' init", lo=0.0, lo_open=True)
    norm: str = opt("none", "normalization layer", registry="tunelab.nn.norms:NORMS")
    norm_position: str = opt("before", "norm before or after the activation",
                             choices=["before", "after"])
    groups: int = opt(8, "number of groups of group norm", lo=1)
    dropout: float = opt(0.0, "dropout rate after each hidden layer", lo=0.0, hi=1.0, hi_open=True)
    residual: bool = opt(False, "mlp: identity skip connection around each hidden block whose input "
                                "and output widths are equal")


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = opt("adam", "optimizer", registry="tunelab.optim.optimizers:OPTIMIZERS")
    lr: Optional[float] = opt(None, "learning rate (default depends on the optimizer)",
                              lo=0.0, lo_open=True)
    momentum: Optional[float] = opt(None, "momentum of 'momentum' and 'nesterov' (default 0.9) and of 'rmsprop' "
                                          "(default 0, torch's); the others take none (0)", lo=0.0, hi=1.0,
                                    hi_open=True)
    betas: list[float] = opt([0.9, 0.999], "adam/adamw betas")
    eps: Optional[float] = opt(None, "numerical epsilon (default: torch's for the optimizer)",
                               lo=0.0, lo_open=True)
    rho: float = opt(0.9, "adadelta decay", lo=0.0, hi=1.0, hi_open=True)
    alpha: float = opt(0.99, "rmsprop smoothing constant", lo=0.0, hi=1.0, hi_open=True)
    weight_decay: float = opt(0.0, "L2 penalty (decoupled for adamw)", lo=0.0)


# metrics a plateau schedule or early stopping may watch (train_eval_*: evaluation mode)
MONITORS = ["val_loss", "val_accuracy", "train_loss", "train_accuracy", "train_eval_loss", "train_eval_accuracy"]


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = opt("constant", "lr schedule", registry="tunelab.optim.schedules:SCHEDULES")
    warmup_epochs: int = opt(0, "linear warmup epochs before the schedule", lo=0)
    warmup_start: float = opt(0.1, "lr multiplier at the first warmup epoch", lo=0.0, hi=1.0,
                              lo_open=True)
    step_size: int = opt(10, "step: epochs between decays", lo=1)
    gamma: Optional[float] = opt(None, "decay factor (step: 0.1, exponential: 0.95)",
                                 lo=0.0, hi=1.0, lo_open=True)
    min_lr: float = opt(0.0, "cosine floor and plateau minimum lr", lo=0.0)
    pct_start: float = opt(0.3, "one-cycle: fraction of steps spent increasing", lo=0.0, hi=1.0,
                           lo_open=True, hi_open=True)
    div_factor: float = opt(25.0, "one-cycle: initial lr = lr / div_factor", lo=1.0)
    final_div_factor: float = opt(1e4, "one-cycle: final lr = initial / final_div_factor", lo=1.0)
    monitor: str = opt("val_loss", "plateau metric",
                       choices=MONITORS)
    mode: str = opt("auto", "plateau: min, max, or auto from the metric", choices=["auto", "min", "max"])
    factor: float = opt(0.1, "plateau: lr multiplier on a plateau", lo=0.0, hi=1.0,
                        lo_open=True, hi_open=True)
    patience: int = opt(5, "plateau: epochs without improvement before reducing", lo=0)
    cooldown: int = opt(0, "plateau: epochs to wait after a reduction", lo=0)
    threshold: float = opt(1e-4, "plateau: relative improvement that counts", lo=0.0)


@dataclass(frozen=True)
class EarlyStoppingConfig:
    enabled: bool = opt(False, "stop when the monitored metric stops improving")
    monitor: str = opt("val_loss", "metric to watch",
                       choices=MONITORS)
    mode: str = opt("auto", "min, max, or auto from the metric", choices=["auto", "min", "max"])
    patience: int = opt(5, "epochs without improvement before stopping", lo=0)
    min_delta: float = opt(0.0, "smallest change that counts as improvement", lo=0.0)
    restore_best: bool = opt(True, "restore the best weights at the end")


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = opt(1, "write checkpoints/last.pt every N epochs (0: only at the end)", lo=0)
    every_steps: int = opt(0, "also write checkpoints/last.pt every N steps within an epoch (0: off)", lo=0)
    keep: int = opt(3, "per-epoch checkpoints kept (epoch-N.pt, newest first; 0: none)", lo=0)
    best: bool = opt(True, "keep checkpoints/best.pt at the best epoch of early_stopping.monitor")


LOGGERS = ["tensorboard"]


@dataclass(frozen=True)
class TrainingConfig:
    epochs: Optional[int] = opt(None, "training epochs (null: 20; with training.steps leave it out: the run has "
                                    "ceil(steps / eval_every) evaluation periods, its 'epochs')", lo=1)
    steps: Optional[int] = opt(None, "train this many optimizer steps instead of whole epochs", lo=1)
    eval_every: Optional[int] = opt(None, "with training.steps: evaluate every N steps (null: 100)", lo=1)
    train_eval_size: Optional[int] = opt(None, "examples of the training set measured in evaluation mode "
                                               "each epoch (null: as many as the validation set, "
                                               "10000 without one; 0: off)", lo=0)
    batch_size: int = opt(128, "mini-batch size", lo=1)
    eval_batch_size: int = opt(8192, "batch size of evaluation passes", lo=1)
    seed: int = opt(0, "seed of weights, data order, dropout and augmentation", lo=0)
    device: str = opt("auto", "cpu, cuda or auto", choices=["auto", "cpu", "cuda"])
    threads: Optional[int] = opt(None, "torch CPU threads (null: auto, the cores other work leaves free)", lo=1)
    early_stopping: EarlyStoppingConfig = opt(EarlyStoppingConfig())
    checkpoint: CheckpointConfig = opt(CheckpointConfig())
    log: list[str] = opt([], "extra loggers for the run folder", choices=LOGGERS)


@dataclass(frozen=True)
class AugmentConfig:
    translate: int = opt(0, "random shift of up to this many pixels", lo=0)
    rotate: float = opt(0.0, "random rotation of up to this many degrees", lo=0.0, hi=180.0)
    hflip: bool = opt(False, "random horizontal flip (only where the dataset allows it)")
    noise: float = opt(0.0, "std of added gaussian noise", lo=0.0)
    cutout: int = opt(0, "side of a random square set to zero", lo=0)

    @property
    def active(self) -> bool:
        return bool(self.translate or self.rotate or self.hflip or self.noise or self.cutout)


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = opt(DataConfig())
    model: ModelConfig = opt(ModelConfig())
    optimizer: OptimizerConfig = opt(OptimizerConfig())
    schedule: ScheduleConfig = opt(ScheduleConfig())
    training: TrainingConfig = opt(TrainingConfig())
    augment: AugmentConfig = opt(AugmentConfig())


# --------------------------------------------------------------------------- parsing

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = typing.get_args(tp)
        names = " or ".join(_type_name(a) for a in args if a is not type(None))
        return f"{names} or null" if type(None) in args else names
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


INT_LIMIT = 2 ** 63


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; return it in canonical form."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{key}={_short(value)} has the wrong type; expected {_type_name(tp)}")
    if origin is typing.Union:
        if value is None and type(None) in typing.get_args(tp):
            return None
        inners = [a for a in typing.get_args(tp) if a is not type(None)]
        for inner in inners[:-1]:  # int or list[int]: the first type that fits
            try:
                return _coerce(key, value, inner)
            except ConfigError:
                continue
        try:
            return _coerce(key, value, inners[-1])
        except ConfigError:
            if len(inners) == 1:
                raise  # its own message (a number that is not finite, a wrong item)
            raise bad from None
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_coerce(f"{key}[{i}]", v, typing.get_args(tp)[0]) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if not -INT_LIMIT <= value < INT_LIMIT:  # torch, numpy and seeds take 64-bit integers
                raise ConfigError(f"{key}={_short(value)} is out of range; allowed: a whole number "
                                  f"in [-2**63, 2**63)")
            return value
        raise bad
    if tp is float:
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{key}={value!r} is not a finite number")
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    raise bad


def _check_range(key: str, value: Any, meta: dict, shown: Any = None) -> None:
    values = value if isinstance(value, list) else [value]
    lo, hi = meta.get("lo"), meta.get("hi")
    for v in values:
        if v is None or isinstance(v, str):
            continue
        low_bad = lo is not None and (v <= lo if meta["lo_open"] else v < lo)
        high_bad = hi is not None and (v >= hi if meta["hi_open"] else v > hi)
        if low_bad or high_bad:
            left = "(" if meta["lo_open"] else "["
            right = ")" if meta["hi_open"] else "]"
            span = f"{left}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}{right}"
            raise ConfigError(f"{key}={shown if shown is not None else value!r} is out of range; allowed: {span}")


def _check_choice(key: str, value: Any, meta: dict) -> None:
    if isinstance(value, list):  # a list of choices: each item is checked
        for i, item in enumerate(value):
            _check_choice(f"{key}[{i}]", item, meta)
        return
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of {sorted(meta['choices'])}")
    if meta.get("registry"):
        module, attr = meta["registry"].split(":")
        registry = getattr(importlib.import_module(module), attr)
        if value not in registry:
            raise ConfigError(registry.unknown_message(value).replace(registry.key, key, 1))


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


# names other libraries give keys that tunelab spells differently
_KEY_ALIASES = {"learning_rate": "lr", "wd": "weight_decay"}


def _key_paths(cls: Optional[type] = None, prefix: str = "") -> list[str]:
    """Every dotted key of the config tree, sections included (``training.early_stopping``)."""
    cls = RunConfig if cls is None else cls
    paths = []
    for name, tp in _hints(cls).items():
        path = f"{prefix}.{name}" if prefix else name
        paths.append(path)
        if dataclasses.is_dataclass(tp):
            paths += _key_paths(tp, path)
    return paths


def _key_hint(name: str, siblings: list[str], prefix: str) -> str:
    """`` (did you mean 'optimizer.lr'?)`` for an unknown key: a close name beside it, else the
    same or a close name elsewhere in the tree (``epochs`` -> ``training.epochs``); "" if none."""
    name = _KEY_ALIASES.get(name, name)
    guesses = [f"{prefix}.{n}" if prefix else n for n in difflib.get_close_matches(name, siblings, n=1)]
    if not guesses:
        paths = _key_paths()
        last = {p.rsplit(".", 1)[-1] for p in paths}
        close = difflib.get_close_matches(name, sorted(last), n=1)
        guesses = [p for p in paths if close and p.rsplit(".", 1)[-1] == close[0]]
    if not guesses:
        return ""
    return f" (did you mean {guesses[0]!r}?)" if len(guesses) == 1 else f" (did you mean one of {guesses}?)"


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}={raw!r} must be a mapping of keys to values")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in raw:
        if name not in fields:
            shown = name if isinstance(name, str) and name.isprintable() else repr(name)  # one line, always
            where = f"{prefix}.{shown}" if prefix else shown
            raise ConfigError(f"{where} is not a config key; allowed keys: {sorted(fields)}"
                              f"{_key_hint(str(name), list(fields), prefix)}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in raw:
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, raw[name] if raw[name] is not None else {}, key)
            continue
        if isinstance(raw[name], dict) and raw[name]:
            sub = next(iter(raw[name]))
            raise ConfigError(f"{key}.{sub} is not a config key; {key} is a value, not a section")
        value = _coerce(key, raw[name], tp)
        _check_range(key, value, f.metadata, shown=raw[name])
        if value is not None:
            _check_choice(key, value, f.metadata)
        kwargs[name] = value
    return cls(**kwargs)


def _check_defaults(obj: Any, prefix: str = "") -> None:
    """Validate registry-backed defaults too (catches a default naming nothing)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(value):
            _check_defaults(value, key)
        elif value is not None:
            _check_choice(key, value, f.metadata)


def _cross_check(cfg: RunConfig) -> None:
    """Rules that span several fields."""
    if len(cfg.optimizer.betas) != 2 or not all(0 <= b < 1 for b in cfg.optimizer.betas):
        raise ConfigError(f"optimizer.betas={cfg.optimizer.betas!r} must be two numbers in [0, 1)")
    if cfg.model.name == "mlp" and any(h < 1 for h in cfg.model.hidden):
        raise ConfigError(f"model.hidden={cfg.model.hidden!r} must hold positive widths")
    if any(c < 1 for c in cfg.model.channels) or (cfg.model.name == "cnn" and not cfg.model.channels):
        raise ConfigError(f"model.channels={cfg.model.channels!r} must be a non-empty list of positive ints")
    if cfg.model.norm == "instance" and cfg.model.name != "cnn":
        raise ConfigError("model.norm='instance' needs spatial maps; it is allowed only with model.name='cnn'")
    if cfg.data.name in _PATH_SOURCES and not cfg.data.path:
        what = "folder" if cfg.data.name == "images" else "file"
        raise ConfigError(f"data.path is required for data.name={cfg.data.name!r}; give the {what} to read")
    if cfg.data.path is not None and cfg.data.name not in _PATH_SOURCES and _builtin_source(cfg.data.name):
        raise ConfigError(f"data.path={cfg.data.path!r} is only used with data.name csv, npz or images; "
                          f"got data.name={cfg.data.name!r}")
    _check_per_block(cfg.model)
    _check_momentum(cfg.optimizer)
    if cfg.model.residual and cfg.model.name != "mlp":
        raise ConfigError(f"model.residual=true applies to model.name='mlp'; got model.name={cfg.model.name!r}")
    _check_no_validation(cfg)
    for i, name in enumerate(cfg.training.log):
        if name in cfg.training.log[:i]:
            raise ConfigError(f"training.log[{i}]={name!r} is given twice; allowed: each logger once")
    if cfg.schedule.warmup_epochs >= cfg.training.epochs and cfg.schedule.warmup_epochs > 0:
        raise ConfigError(f"schedule.warmup_epochs={cfg.schedule.warmup_epochs} must be less than "
                          f"training.epochs={cfg.training.epochs}")


_PATH_SOURCES = ("csv", "npz", "images")


def _check_momentum(o: OptimizerConfig) -> None:
    """optimizer.momentum is read by momentum, nesterov and rmsprop only: elsewhere a value above 0 is refused."""
    from tunelab.optim.optimizers import MOMENTUM_USERS

    if o.momentum and o.name not in MOMENTUM_USERS:
        hint = " (momentum SGD is optimizer.name='momentum')" if o.name == "sgd" else ""
        raise ConfigError(f"optimizer.momentum={o.momentum!r} is not used by optimizer.name={o.name!r}{hint}; "
                          f"allowed: 0 or unset, or optimizer.name one of {list(MOMENTUM_USERS)}")


def saved_config(raw: Any, before_0_2: bool = False) -> Any:
    """A run folder's config.yaml as this version reads it: tunelab 0.1.0 saved optimizer.momentum 0.9
    for every optimizer and applied it in momentum and nesterov only, so where it went unused it reads
    as 0 (what that run trained with) instead of being refused. ``before_0_2``: the folder is known to
    come from 0.1.0 (its result.json records no versions), so an rmsprop run's 0.9 was not applied either."""
    from tunelab.optim.optimizers import MOMENTUM_USERS

    o = raw.get("optimizer") if isinstance(raw, dict) else None
    if not isinstance(o, dict) or o.get("momentum") != 0.9:
        return raw
    name = o.get("name", "adam")
    unused = name not in MOMENTUM_USERS or (before_0_2 and name == "rmsprop")  # 0.1.0's rmsprop ignored it
    return {**raw, "optimizer": {**o, "momentum": 0.0}} if unused else raw


# the optimizer keys whose default depends on optimizer.name
NAME_DEFAULTS = ("lr", "eps", "momentum")


def follow_optimizer_name(before: Any, section: Any, given: Sequence[str] = ()) -> None:
    """An override that changes ``optimizer.name`` takes the new optimizer's own lr, eps and momentum
    where ``section`` (edited in place) still holds the old optimizer's defaults: a resolved base of
    momentum SGD (lr 0.05, momentum 0.9) switched to adam trains adam at lr 1e-3, not 0.05. Keys in
    ``given`` were set along with the name and stay."""
    from tunelab.optim.optimizers import default_eps, default_lr, default_momentum

    if not isinstance(before, dict) or not isinstance(section, dict):
        return
    old, new = before.get("name", "adam"), section.get("name", "adam")
    if old == new or not isinstance(old, str):
        return
    defaults = {"lr": default_lr, "eps": default_eps, "momentum": default_momentum}
    for key in NAME_DEFAULTS:
        value = section.get(key)
        if key not in given and value is not None and value == before.get(key) == defaults[key](old):
            del section[key]


def _check_per_block(m: ModelConfig) -> None:
    """kernel_size, stride and padding: one value for every conv block, or one per block."""
    for key in ("kernel_size", "stride", "padding"):
        value = getattr(m, key)
        if isinstance(value, list) and len(value) != len(m.channels):
            raise ConfigError(f"model.{key}={value!r} gives {len(value)} values for {len(m.channels)} conv "
                              f"blocks (model.channels={m.channels!r}); allowed: one number, or one per block")


def _check_no_validation(cfg: RunConfig) -> None:
    """data.val_fraction=0 leaves no validation set: nothing may watch one."""
    if cfg.data.val_fraction != 0:
        return
    es, s = cfg.training.early_stopping, cfg.schedule
    if es.enabled and es.monitor.startswith("val_"):
        raise ConfigError(f"training.early_stopping.monitor={es.monitor!r} needs a validation set, and "
                          f"data.val_fraction=0 holds none; allowed: a train_* monitor, or data.val_fraction > 0")
    if s.name == "plateau" and s.monitor.startswith("val_"):
        raise ConfigError(f"schedule.monitor={s.monitor!r} needs a validation set, and data.val_fraction=0 "
                          f"holds none; allowed: a train_* monitor, or data.val_fraction > 0")


def _resolve_steps(cfg: RunConfig) -> RunConfig:
    """training.steps: the run is ceil(steps / eval_every) evaluation periods ("epochs"); a saved
    config leaves epochs out (``to_dict``), so giving both is a conflict."""
    t = cfg.training
    if t.steps is None:
        if t.eval_every is not None:
            raise ConfigError(f"training.eval_every={t.eval_every} is used only with training.steps; "
                              f"set training.steps, or remove training.eval_every")
        return cfg if t.epochs is not None else dataclasses.replace(
            cfg, training=dataclasses.replace(t, epochs=20))
    epochs_given = t.epochs is not None
    every = t.eval_every if t.eval_every is not None else min(100, t.steps)
    if every > t.steps:
        raise ConfigError(f"training.eval_every={every} is more than training.steps={t.steps}; "
                          f"allowed: 1 to {t.steps}")
    periods = math.ceil(t.steps / every)
    if epochs_given and t.epochs != periods:
        raise ConfigError(f"training.epochs={t.epochs} and training.steps={t.steps} are alternatives; "
                          f"give one (with steps, the run has ceil(steps / eval_every) = {periods} evaluations)")
    return dataclasses.replace(cfg, training=dataclasses.replace(t, eval_every=every, epochs=periods))


def _builtin_source(name: str) -> bool:
    """Whether ``data.name`` is one of tunelab's own sources (a user-registered source may
    read any DataConfig field, so only the built-in ones are known to ignore ``data.path``)."""
    from tunelab.data.sources import DATASETS

    return name in DATASETS and getattr(DATASETS.get(name), "__module__", "") == "tunelab.data.sources"


def _check_resolved(cfg: RunConfig, lr_given: bool) -> None:
    """Rules that need the resolved defaults (the optimizer's lr)."""
    lr, min_lr = cfg.optimizer.lr, cfg.schedule.min_lr
    if min_lr > lr:
        default = "" if lr_given else f" ({cfg.optimizer.name}'s default)"
        raise ConfigError(f"schedule.min_lr={min_lr!r} is above optimizer.lr={lr!r}{default}; "
                          f"allowed: schedule.min_lr <= optimizer.lr")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into (["a", "b"], parsed YAML value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} must look like key.path=value")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r} has an empty key; use key.path=value")
    try:
        parsed = load_yaml_text(value) if value.strip() else None
    except YAMLBudgetError as e:
        raise ConfigError(f"--set {key}={_short(value)} is refused: {e}") from None
    except DuplicateKeyError as e:
        raise ConfigError(f"--set {key}={_short(value)} has the key {e.key!r} twice; "
                          f"allowed: each key once per mapping") from None
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}={_short(value)} is not a valid YAML value") from None
    return key.split("."), parsed


def _apply_override(raw: dict, path: list[str], value: Any, given: Sequence[str] = ()) -> None:
    """Set one dotted override; ``given``: the optimizer keys other overrides set (they stay when this
    one changes optimizer.name)."""
    import copy

    before = copy.deepcopy(raw.get("optimizer")) if path == ["optimizer", "name"] else None
    _set_override(raw, path, value)
    if before is not None:
        follow_optimizer_name(before, raw.get("optimizer"), given)


def _set_override(raw: dict, path: list[str], value: Any) -> None:
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(path)}: {part!r} is not a section")
        node = child
    node[path[-1]] = value


def from_dict(raw: dict | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Build a validated RunConfig from a plain dict plus dotted ``key=value`` overrides."""
    import copy

    raw = copy.deepcopy(raw) if raw is not None else {}  # an empty file is all defaults; [] or 0 is not
    if not isinstance(raw, dict):
        raise ConfigError(f"config must be a mapping of sections, got {type(raw).__name__} {_short(raw)}")
    parsed = [parse_override(text) for text in overrides]
    given = [path[1] for path, _ in parsed if len(path) == 2 and path[0] == "optimizer"]
    for path, value in parsed:
        _apply_override(raw, path, value, given)
    cfg = _build(RunConfig, raw, "")
    _check_defaults(cfg)
    cfg = _resolve_steps(cfg)
    _cross_check(cfg)
    resolved = _resolve(cfg)
    _check_resolved(resolved, lr_given=cfg.optimizer.lr is not None)
    return resolved


def _resolve(cfg: RunConfig) -> RunConfig:
    """Fill in the defaults that depend on other fields, so a saved config is fully explicit."""
    from tunelab.optim.optimizers import default_eps, default_lr, default_momentum

    o, s = cfg.optimizer, cfg.schedule
    o = dataclasses.replace(o, lr=o.lr if o.lr is not None else default_lr(o.name),
                            eps=o.eps if o.eps is not None else default_eps(o.name),
                            momentum=o.momentum if o.momentum is not None else default_momentum(o.name))
    gamma = s.gamma if s.gamma is not None else (0.95 if s.name == "exponential" else 0.1)
    return dataclasses.replace(cfg, optimizer=o, schedule=dataclasses.replace(s, gamma=gamma))


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config file (or none: all defaults) and apply dotted overrides."""
    raw: Any = {}
    if path is not None:
        p = Path(path)
        if p.is_dir():
            raise ConfigError(f"config file {str(p)!r} is a directory; give a YAML file")
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        raw = read_yaml(p, "config file", mapping=False)
    return from_dict(raw, overrides)


class DuplicateKeyError(yaml.YAMLError):
    """A mapping of a YAML document gives the same key twice."""

    def __init__(self, key: str, line: int, first_line: int) -> None:
        super().__init__(f"duplicate key {key!r} at line {line} (first at line {first_line})")
        self.key, self.line, self.first_line = key, line, first_line


def _check_unique_keys(node: yaml.Node, path: tuple[str, ...], seen: set[int]) -> None:
    """Walk a composed YAML node tree; raise DuplicateKeyError for a key given twice in a
    mapping (merge keys ``<<`` are left to PyYAML: an explicit key may override a merged one)."""
    if id(node) in seen:  # an alias repeats a node already walked (or a recursive one)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                _check_unique_keys(value_node, path, seen)
                continue
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if name is not None:
                ident = (key_node.tag, name)
                line = key_node.start_mark.line + 1
                if ident in first:
                    raise DuplicateKeyError(".".join((*path, name)), line, first[ident])
                first[ident] = line
            _check_unique_keys(value_node, (*path, str(name)), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique_keys(item, (*path[:-1], f"{path[-1]}[{i}]") if path else path, seen)


# what one YAML text (a config, a space, a --set or --vary value) may hold: a config is a few
# hundred nodes, five levels deep; an alias bomb (each anchor repeating the last ten times) or
# thousands of nested brackets is refused before anything walks it
YAML_MAX_BYTES = 1 << 20
YAML_MAX_DEPTH = 64
YAML_MAX_NODES = 100_000  # counted with every alias expanded


class YAMLBudgetError(yaml.YAMLError):
    """A YAML text beyond the loading budget (YAML_MAX_BYTES, YAML_MAX_DEPTH, YAML_MAX_NODES)."""


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping (PyYAML would keep
    the last silently) and a document beyond the budget (nesting deeper than YAML_MAX_DEPTH, more
    than YAML_MAX_NODES nodes once aliases are expanded); use as
    ``yaml.load(text, Loader=UniqueKeyLoader)``."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > YAML_MAX_DEPTH:
                raise YAMLBudgetError(f"it nests deeper than {YAML_MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        size = _expanded_size(node, {})
        if size > YAML_MAX_NODES:
            raise YAMLBudgetError(f"it expands to {size:.3g} values (aliases repeated); "
                                  f"allowed: at most {YAML_MAX_NODES}")
        _check_unique_keys(node, (), set())
        return super().construct_document(node)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes in ``node`` with every alias expanded, counted once per shared node (no expansion)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 0  # a recursive alias counts once
    if isinstance(node, yaml.SequenceNode):
        n = 1 + sum(_expanded_size(c, memo) for c in node.value)
    elif isinstance(node, yaml.MappingNode):
        n = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        n = 1
    memo[id(node)] = n
    return n


def load_yaml_text(text: str) -> Any:
    """``text`` parsed as YAML within the budget (raises yaml.YAMLError, YAMLBudgetError among them)."""
    if len(text.encode("utf-8", "replace")) > YAML_MAX_BYTES:
        raise YAMLBudgetError(f"it is over {YAML_MAX_BYTES // 1024} KiB")
    return yaml.load(text, Loader=UniqueKeyLoader)


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (an error line never echoes a whole value)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 5] + " ...'"


def read_yaml(path: Path, what: str, mapping: bool = True) -> Any:
    """Parse a YAML file (safe_load semantics); a syntax error or a key given twice in one
    mapping is a one-line ConfigError naming the file and line."""
    try:
        if Path(path).stat().st_size > YAML_MAX_BYTES:
            raise YAMLBudgetError(f"it is over {YAML_MAX_BYTES // 1024} KiB")
        raw = load_yaml_text(Path(path).read_text(encoding="utf-8"))
        raw = {} if raw is None else raw  # an empty file
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {str(path)!r} is not UTF-8 text (byte {e.start}); "
                          f"allowed: a UTF-8 YAML file") from None
    except OSError as e:
        raise ConfigError(f"{what} {str(path)!r} cannot be read: {e.strerror or e}") from None
    except YAMLBudgetError as e:
        raise ConfigError(f"{what} {str(path)!r} is refused: {e}") from None
    except DuplicateKeyError as e:
        raise ConfigError(f"{what} {str(path)!r} has the key {e.key!r} twice (lines {e.first_line} "
                          f"and {e.line}); allowed: each key once per section") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{what} {str(path)!r} is not valid YAML{where}") from None
    if mapping and not isinstance(raw, dict):
        raise ConfigError(f"{what} {str(path)!r} must hold a mapping, got {type(raw).__name__}")
    return raw


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config (lists stay lists), for YAML and JSON. A run of
    ``training.steps`` leaves ``epochs`` out (null): it follows from steps and eval_every."""
    out = dataclasses.asdict(cfg)
    if isinstance(cfg, RunConfig) and cfg.training.steps is not None:
        out["training"]["epochs"] = None
    return out


def dump_config(cfg: RunConfig, path: str | Path) -> None:
    from tunelab.fileio import write_text

    write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def replace(cfg: RunConfig, overrides: Sequence[str]) -> RunConfig:
    """A new validated config: ``cfg`` with dotted overrides applied."""
    return from_dict(to_dict(cfg), overrides)
