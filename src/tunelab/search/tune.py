"""``tunelab.tune``: search hyperparameters over real training runs (or your own objective).

Example:
    >>> import tunelab
    >>> res = tunelab.tune({"base": {"training": {"epochs": 1}, "model": {"hidden": [16]}},
    ...                     "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}},
    ...                    trials=2, storage="sqlite:///:memory:", seed=0)
    >>> len(res.study.trials), 0 < res.best_value <= 1
    (2, True)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import optuna

from tunelab.errors import ConfigError
from tunelab.search.pruners import make_pruner
from tunelab.search.samplers import grid_size, make_sampler
from tunelab.search.space import SearchSpace
from tunelab.search.storage import storage_errors
from tunelab.search.study import Progress, StudyDriver, recover_stale

__all__ = ["tune", "TuneResult", "load_space", "DEFAULT_STORAGE"]

DEFAULT_STORAGE = "sqlite:///tunelab.db"


@dataclass
class TuneResult:
    """The study (the last stage's, when staged), the best trial and its config."""

    study: optuna.Study
    best_value: Optional[float]
    best_params: dict[str, Any]
    best_config: Optional[dict]
    best_number: Optional[int]
    studies: list[optuna.Study] = field(default_factory=list)
    progress: Optional[Progress] = None


def load_space(space: Union[str, Path, dict, SearchSpace], custom: bool = False) -> SearchSpace:
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, dict):
        return SearchSpace.from_dict(space, Path.cwd(), validate_config=not custom)
    if not Path(space).is_file():
        raise ConfigError(f"space file {str(space)!r} does not exist")
    return SearchSpace.load(space, validate_config=not custom)


def _wants_tensorboard(space: SearchSpace) -> bool:
    """Whether the base config or a choice in the space sets ``training.log: [tensorboard]``."""
    from tunelab.trainer.tensorboard import wants_tensorboard

    return wants_tensorboard(space.base) or any(
        "tensorboard" in json.dumps(list(dist.choices), default=str)
        for key, dist in space.params.items() if key.startswith("training.log"))


def _max_epochs(space: SearchSpace) -> int:
    dist = space.params.get("training.epochs")
    if dist is not None and dist.choices:
        return int(max(dist.choices))
    if dist is not None and dist.high is not None:
        return int(dist.high)
    return int(space.base.get("training", {}).get("epochs", 20))


def _open_study(name: str, storage: str, space: SearchSpace, sampler, pruner) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with storage_errors(storage):
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                    direction=space.direction, load_if_exists=True)
    fingerprint = json.dumps({"params": sorted(space.params), "metric": space.objective_metric,
                              "direction": space.direction})
    stored = study.user_attrs.get("space_fingerprint")
    if stored is None:
        study.set_user_attr("space_fingerprint", fingerprint)
        study.set_user_attr("objective", space.objective_metric)
    elif stored != fingerprint:
        raise ConfigError(f"--study {name!r} already exists with another search space; "
                          f"choose a new --study name or the same space file")
    return study


def _check_same(study: optuna.Study, name: str, **settings: str) -> None:
    """A study continues with the sampler and pruner it started with (its records say so)."""
    for key, value in settings.items():
        stored = study.user_attrs.get(key)
        if stored is not None and stored != value:
            raise ConfigError(f"--{key}={value!r} differs from the {stored!r} that study {name!r} was run with; "
                              f"use --{key} {stored} to continue it, or a new --study name")
        study.set_user_attr(key, value)


def _best(study: optuna.Study, space: SearchSpace, keys: list[str]):
    try:
        trial = study.best_trial
    except ValueError:
        return None, {}, None, None
    values = space.decode(trial.params)
    return trial.value, {k: values[k] for k in keys if k in values}, trial.user_attrs.get("config"), trial.number


def tune(space: Union[str, Path, dict, SearchSpace], *, sampler: str = "random", trials: int = 20,
         pruner: str = "none", workers: int = 1, storage: Optional[str] = None,
         study: Optional[str] = None, seed: Optional[int] = None,
         objective: Optional[Callable[..., float]] = None, stages: bool = False,
         round_size: Optional[int] = None, keep: float = 0.25,
         on_progress: Optional[Callable[[Progress], None]] = None,
         trial_folders: Optional[Union[str, Path]] = None) -> TuneResult:
    """Search ``space`` with ``sampler`` for ``trials`` finished trials (see the CLI help).

    ``objective(config: dict, reporter) -> float`` tunes your own code: call
    ``reporter.report(value, epoch)`` after each epoch so the pruner can stop it.
    Running the same call again continues the study up to ``trials`` in total. Trials whose
    config sets ``training.log: [tensorboard]`` write ``runs/tensorboard/<study>/trial-NNNN``.
    ``trial_folders`` (a folder) gives every trial a live run folder ``trial-NNNN`` in it, which
    ``tunelab control`` and ``tunelab runs`` reach while the study runs.
    """
    from tunelab.execute import make_executor

    if trials < 1:
        raise ConfigError(f"--trials={trials} is out of range; allowed: 1 or more")
    if workers < 1:
        raise ConfigError(f"--workers={workers} is out of range; allowed: 1 or more")
    if round_size is not None and sampler != "coarse-to-fine":
        raise ConfigError(f"--round-size={round_size} only applies to --sampler coarse-to-fine; "
                          f"got --sampler {sampler}")
    if round_size is not None and round_size < 4:
        raise ConfigError(f"--round-size={round_size} is out of range; allowed: 4 or more "
                          f"(the top quarter of a round must hold a trial)")
    sp = load_space(space, custom=objective is not None)
    if objective is None and _wants_tensorboard(sp):
        from tunelab.trainer.tensorboard import require_tensorboard

        require_tensorboard()  # one line now, not one failed trial each
    name = study or (Path(space).stem if isinstance(space, (str, Path)) else "study")
    storage = storage or DEFAULT_STORAGE
    stage_keys = sp.stages if stages else [list(sp.params)]
    budgets = [trials // len(stage_keys) + (1 if i < trials % len(stage_keys) else 0)
               for i in range(len(stage_keys))]
    base, fixed, studies = sp.base, {}, []
    result = None
    for i, (keys, budget) in enumerate(zip(stage_keys, budgets)):
        stage_space = dataclasses.replace(sp, params={k: sp.params[k] for k in keys})
        target = min(budget, grid_size(stage_space)) if sampler == "grid" else budget
        # rounds of at least 8 trials: the top quarter then holds >= 2 trials to span a range
        opts = {"round_size": round_size if round_size is not None else max(8, target // 4), "keep": keep} if sampler == "coarse-to-fine" else {}
        smp = make_sampler(sampler, stage_space, seed, **opts)
        st_name = f"{name}.stage{i + 1}" if stages else name
        st = _open_study(st_name, storage, stage_space, smp, make_pruner(pruner, _max_epochs(sp)))
        _check_same(st, st_name, sampler=sampler, pruner=pruner)
        if sampler == "coarse-to-fine":  # keep the first run's round size, or rounds would shift
            stored = st.user_attrs.get("c2f_round_size")
            if stored is not None and round_size is not None and round_size != stored:
                raise ConfigError(f"--round-size={round_size} differs from the {stored} that study {st_name!r} "
                                  f"was run with; leave it out to continue the study, or use a new --study name")
            size = int(stored if stored is not None else opts["round_size"])
            st.sampler = make_sampler(sampler, stage_space, seed, **{**opts, "round_size": size})
            st.set_user_attr("c2f_round_size", size)
        if stages:
            st.set_user_attr("stage", {"index": i + 1, "keys": keys, "fixed": fixed})
        recover_stale(st)
        runs_root = Path(trial_folders) / st_name if trial_folders is not None else None
        driver = StudyDriver(st, stage_space, keys, base, target, objective, on_progress, run_root=runs_root)
        with make_executor(workers) as executor:
            progress = driver.run(executor)
        value, best_vals, config, number = _best(st, sp, keys)
        fixed = {**fixed, **best_vals}
        if stages and best_vals:
            base = sp.apply(base, best_vals)
        studies.append(st)
        result = TuneResult(st, value, fixed, config, number, studies, progress)
    return result
