"""``tunelab.tune``: search hyperparameters over real training runs (or your own objective).

Without ``storage=`` a study lives in memory and ends with the call: a rerun after the
objective changed starts afresh instead of returning an old best. Pass a URL
(``storage="sqlite:///tunelab.db"``, what the CLI uses) to keep it and continue it later.

Example:
    >>> import tunelab
    >>> res = tunelab.tune({"base": {"training": {"epochs": 1}, "model": {"hidden": [16]}},
    ...                     "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}},
    ...                    trials=2, seed=0, overrides=["training.threads=1"])
    >>> len(res.study.trials), 0 < res.best_value <= 1, res.storage
    (2, True, 'in memory (pass storage= to keep it)')
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import optuna

from tunelab.errors import ConfigError
from tunelab.trainer.runfolder import is_utf8
from tunelab.search.coarse_to_fine import auto_round_size
from tunelab.search.drivers import create_study
from tunelab.search.pruners import make_pruner
from tunelab.search.samplers import grid_size, make_sampler
from tunelab.search.profile import study_profile
from tunelab.search.space import SearchSpace
from tunelab.search.storage import StorageLike, delete_studies, resolve_storage, storage_errors
from tunelab.search.study import Progress, StudyDriver, recover_stale

__all__ = ["tune", "TuneResult", "load_space", "study_dir", "DEFAULT_STORAGE"]

DEFAULT_STORAGE = "sqlite:///tunelab.db"  # the CLI's default; tune() itself keeps studies in memory
# keys that change how a trial runs, not what it computes: a study may continue across them
_NEUTRAL_KEYS = ("training.threads", "training.device", "training.eval_batch_size", "training.log",
                 "training.checkpoint", "data.dir")


@dataclass
class TuneResult:
    """The study (the last stage's, when staged), the best trial and its config.

    ``storage`` says where the study is kept (a URL, or "in memory (pass storage= to keep
    it)"); ``progress`` holds the last stage's counts (``stopped_early == "timeout"`` when the
    time budget ended the run); ``progresses`` one per stage.
    """

    study: optuna.Study
    best_value: Optional[float]
    best_params: dict[str, Any]
    best_config: Optional[dict]
    best_number: Optional[int]
    studies: list[optuna.Study] = field(default_factory=list)
    progress: Optional[Progress] = None
    storage: str = ""
    progresses: list[Progress] = field(default_factory=list)
    profile: dict = field(default_factory=dict)  # where the wall time went (tunelab.search.profile)


# samplers for which --executor auto trains small trials as a population: those that do not wait on
# results, and TPE, measured faster there once the population refilled (docs/benchmarks.md, "The
# population refills": 2.4x inline and 1.6x two processes; with ASHA 1.5x and 1.2x)
AUTO_POPULATION_SAMPLERS = ("random", "grid", "tpe")


def load_space(space: Union[str, Path, dict, SearchSpace], custom: bool = False) -> SearchSpace:
    """A SearchSpace from a space file, a dict with its keys, or a SearchSpace (returned as is)."""
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, dict):
        return SearchSpace.from_dict(space, Path.cwd(), validate_config=not custom)
    if not Path(space).is_file():
        raise ConfigError(f"space file {str(space)!r} does not exist")
    return SearchSpace.load(space, validate_config=not custom)


def study_dir(study: str) -> Path:
    """Where the CLI writes a study's outputs (best.yaml, reports): ``runs/<study>``.

    Example:
        >>> study_dir("mnist/lr").as_posix()
        'runs/mnist_lr'
    """
    return Path("runs") / "".join(c if c.isalnum() or c in "-_." else "_" for c in study)


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
    if space.validate_config:  # resolved: null is 20, training.steps gives its periods
        from tunelab.config import from_dict as config_from_dict

        return config_from_dict(space.base).training.epochs
    training = space.base.get("training")
    epochs = training.get("epochs") if isinstance(training, dict) else None
    if epochs is None and not space.validate_config:  # a user objective's own `epochs` key
        epochs = space.base.get("epochs")
    return int(epochs) if isinstance(epochs, (int, float)) and epochs >= 1 else 20


def _with_overrides(sp: SearchSpace, overrides: Sequence[str]) -> SearchSpace:
    """``sp`` with ``key=value`` overrides set in its base config, all checked now."""
    from tunelab.config import from_dict as config_from_dict
    from tunelab.config import parse_override

    if not overrides:
        return sp
    if isinstance(overrides, str):
        raise ConfigError(f"overrides={overrides!r} must be a list of key=value strings")
    base = copy.deepcopy(sp.base)
    for text in overrides:
        try:
            path, value = parse_override(str(text))
        except ConfigError as e:  # config words it for the CLI's --set; this is the argument
            raise ConfigError(str(e).replace("--set ", "overrides: ", 1)) from None
        key = ".".join(path)
        clash = next((k for k in sp.params if k == key or k.startswith(key + ".") or key.startswith(k + ".")), None)
        if clash is not None:
            raise ConfigError(f"overrides: {key}={value!r} sets a key the space searches (space.{clash}); "
                              f"the sampled value would replace it; drop one of the two")
        node = base
        for part in path[:-1]:
            if not isinstance(node.setdefault(part, {}), dict):
                raise ConfigError(f"overrides: {key}: {part!r} is a value, not a section")
            node = node[part]
        node[path[-1]] = value
    if sp.validate_config:
        try:
            config_from_dict(base)
        except ConfigError as e:
            raise ConfigError(f"overrides: {e}") from None
    try:
        return SearchSpace.from_dict({**sp.to_dict(), "base": base}, validate_config=sp.validate_config)
    except ConfigError as e:
        raise ConfigError(f"with overrides {list(overrides)}: {e}") from None


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _resolved_base(sp: SearchSpace) -> dict:
    from tunelab.config import from_dict as config_from_dict
    from tunelab.config import to_dict as config_to_dict

    flat = _flat(config_to_dict(config_from_dict(sp.base)) if sp.validate_config else sp.base)
    return {k: v for k, v in flat.items() if not any(k == n or k.startswith(n + ".") for n in _NEUTRAL_KEYS)}


def _check_base(study: optuna.Study, name: str, base: dict) -> None:
    """A study continues only on the base config it started with: trials of two configs in one
    study would rank apples against oranges, and a changed objective would keep the old best."""
    stored = study.user_attrs.get("base_config")
    if stored is None:  # a new study, or one from before this check: remember it now
        study.set_user_attr("base_config", json.loads(json.dumps(base, default=str)))
        return
    now = json.loads(json.dumps(base, default=str))
    changed = [k for k in sorted(set(stored) & set(now)) if stored[k] != now[k]]
    if changed:
        k = changed[0]
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        raise ConfigError(f"study {name!r} was run with base {k}={stored[k]!r}, now {now[k]!r}{more}; "
                          f"pass fresh=True to start it over, or a new study name")


def _open_study(name: str, storage: object, space: SearchSpace, sampler, pruner) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with storage_errors(storage if isinstance(storage, str) else "<storage object>"):
        study = create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                             direction=space.direction)
    fingerprint = json.dumps({"params": sorted(space.params), "metric": space.objective_metric,
                              "direction": space.direction})
    stored = study.user_attrs.get("space_fingerprint")
    if stored is None:
        study.set_user_attr("space_fingerprint", fingerprint)
        study.set_user_attr("objective", space.objective_metric)
    elif stored != fingerprint:
        raise ConfigError(f"study {name!r} already exists with another search space; "
                          f"pass fresh=True to start it over, choose a new study name, or use the same space")
    return study


def _check_same(study: optuna.Study, name: str, **settings: Any) -> None:
    """A study continues with the sampler and pruner it started with (its records say so)."""
    for key, value in settings.items():
        stored = study.user_attrs.get(key)
        if stored is not None and stored != value:
            raise ConfigError(f"{key}={value!r} differs from the {stored!r} that study {name!r} was run with; "
                              f"use {key}={stored!r} to continue it, fresh=True to start over, or a new study name")
        study.set_user_attr(key, value)


def _reseed(study: optuna.Study, seed: Optional[int]) -> Optional[int]:
    """The sampler seed for this run: a continued study shifts it by its trial count, or a
    seeded sampler would propose the first run's points again."""
    if seed is None:
        return None
    return seed + len(study.get_trials(deepcopy=False))


def _best(study: optuna.Study, space: SearchSpace, keys: list[str]):
    try:
        trial = study.best_trial
    except ValueError:
        return None, {}, None, None
    values = space.decode(trial.params)
    return trial.value, {k: values[k] for k in keys if k in values}, trial.user_attrs.get("config"), trial.number


MAX_TRIALS = 1_000_000  # a study of more trials is a typo (or a number beyond int64)
MAX_SEED = 2**32 - 1  # the samplers' seeds (numpy's RandomState) end here


def _check_args(trials: int, workers: int, sampler: str, round_size: Optional[int],
                timeout: Optional[float], grace_epochs: Optional[int], seed: Optional[int] = None) -> None:
    if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= MAX_TRIALS:
        raise ConfigError(f"trials={trials!r} is out of range; allowed: a whole number from 1 to {MAX_TRIALS}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        raise ConfigError(f"seed={seed!r} is out of range; allowed: a whole number from 0 to {MAX_SEED}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers={workers!r} is out of range; allowed: a whole number >= 1")
    if round_size is not None and sampler != "coarse-to-fine":
        raise ConfigError(f"round_size={round_size} only applies to sampler='coarse-to-fine'; "
                          f"got sampler={sampler!r}")
    if round_size is not None and round_size < 4:
        raise ConfigError(f"round_size={round_size} is out of range; allowed: 4 or more "
                          f"(the top quarter of a round must hold a trial)")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not timeout > 0):
        raise ConfigError(f"timeout={timeout!r} is out of range; allowed: seconds > 0 (or None: no limit)")
    if grace_epochs is not None and (isinstance(grace_epochs, bool) or not isinstance(grace_epochs, int)
                                     or grace_epochs < 1):
        raise ConfigError(f"grace_epochs={grace_epochs!r} is out of range; allowed: a whole number >= 1")


def tune(space: Union[str, Path, dict, SearchSpace], *, sampler: str = "random", trials: int = 20,
         pruner: str = "none", workers: int = 1, storage: StorageLike = None,
         study: Optional[str] = None, seed: Optional[int] = None,
         objective: Optional[Callable[..., float]] = None, stages: bool = False,
         round_size: Optional[int] = None, keep: float = 0.25,
         on_progress: Optional[Callable[[Progress], None]] = None,
         trial_folders: Optional[Union[str, Path]] = None, overrides: Sequence[str] = (),
         fresh: bool = False, timeout: Optional[float] = None,
         grace_epochs: Optional[int] = None, executor: str = "auto",
         population_size: Optional[int] = None, interval: int = 4, ray: Optional[dict] = None,
         trial_timeout: Optional[float] = None) -> TuneResult:
    """Search ``space`` with ``sampler`` for ``trials`` finished trials (see the CLI help).

    ``objective(config: dict, reporter) -> float`` tunes your own code: call
    ``reporter.report(value, epoch)`` after each epoch so the pruner can stop it.
    ``storage`` None keeps the study in memory for this call only; with a URL (or an Optuna
    storage object) running the same call again continues the study up to ``trials`` in
    total, on the same base config (``fresh=True`` deletes it first and starts over).
    ``overrides`` (``["training.threads=1", ...]``) set keys of the space's base config.
    ``timeout`` (seconds) stops asking for new trials once spent; running trials finish.
    Pruners never stop a trial before ``grace_epochs`` epochs (default: 25% of the longest
    trial, at least 2). Trials whose config sets ``training.log: [tensorboard]`` write
    ``runs/tensorboard/<study>/trial-NNNN``. ``trial_folders`` (a folder) gives every trial a
    live run folder ``trial-NNNN`` in it, which ``tunelab control`` and ``tunelab runs`` reach.
    ``executor``: auto (the population for small mlp/cnn trials on built-in data when the sampler does
    not wait on results, else inline, or processes with ``workers`` > 1), inline, processes, or population
    (up to ``population_size`` mlp/cnn trials trained together as one stacked computation; with
    coarse-to-fine at most one round at a time, as the next round is narrowed from this one's results).
    ``sampler="pbt"``: population-based training of all ``trials`` as one population; every
    ``interval`` epochs the bottom quarter copies the top quarter and explores (perturb x0.8/x1.2 or
    resample) the searched hyperparameters, which must be ones a member can change while it trains;
    with ``executor="processes"`` each member is a run folder trained in one of ``workers`` processes,
    ``interval`` epochs at a time, and a copy is a fork of the better member's checkpoint (any model
    the trainer trains, however big).
    ``executor="ray"`` runs trials as Ray actors on the cluster ``ray["address"]`` (auto, local or
    HOST:PORT) with ``trial_cpus`` / ``trial_gpus`` each and ``max_retries`` retries when a worker or a
    node dies (``ray`` maps these names to values; ``workers`` > 1 caps the trials in flight).
    ``trial_timeout`` (seconds): a trial running longer is failed with the reason and its worker
    process (or Ray actor) killed and replaced (a hung or stopped worker too); the study goes on.
    It needs the process executor (``auto`` picks it) or Ray.
    """
    from tunelab.execute import auto_population, make_executor

    _check_args(trials, workers, sampler, round_size, timeout, grace_epochs, seed)
    pbt = None
    if sampler == "pbt":
        executor, population_size, pbt = _pbt_setup(space, objective, overrides, trials, workers, executor,
                                                    population_size, pruner, stages, interval, seed)
    # a bad name or size fails before any write
    make_executor(workers, executor, population_size, ray=ray, trial_timeout=trial_timeout)
    sp = _with_overrides(load_space(space, custom=objective is not None), overrides)
    if objective is None and _wants_tensorboard(sp):
        from tunelab.trainer.tensorboard import require_tensorboard

        require_tensorboard()  # one line now, not one failed trial each
    name = study or (Path(space).stem if isinstance(space, (str, Path)) else "study")
    if not is_utf8(name):
        raise ConfigError(f"study={ascii(name)} is not valid UTF-8; allowed: a study name in UTF-8")
    store, where = resolve_storage(storage)
    plan = _plan(sp, sampler, trials, stages, seed, round_size, keep)  # bad names fail before any write
    make_pruner(pruner, _max_epochs(sp), grace_epochs)
    base_fingerprint = _resolved_base(sp)
    deleted = sum(n for _, n in delete_studies(store, name, must_exist=False)) if fresh else 0
    base, fixed, studies, progresses = sp.base, {}, [], []
    deadline = None if timeout is None else time.perf_counter() + timeout
    result = None
    for i, (keys, stage_space, target, grid, opts) in enumerate(plan):
        st_name = f"{name}.stage{i + 1}" if stages else name
        st = _open_study(st_name, store, stage_space, _sampler(sampler, stage_space, seed, opts),
                         make_pruner(pruner, _max_epochs(sp), grace_epochs))
        _check_same(st, st_name, sampler=sampler, pruner=pruner)
        _check_base(st, st_name, base_fingerprint)
        if sampler == "coarse-to-fine":  # keep the first run's round size, or rounds would shift
            stored = st.user_attrs.get("c2f_round_size")
            if stored is not None and round_size is not None and round_size != stored:
                raise ConfigError(f"round_size={round_size} differs from the {stored} that study {st_name!r} "
                                  f"was run with; leave it out to continue the study, or use a new study name")
            opts["round_size"] = int(stored if stored is not None else opts["round_size"])
            st.set_user_attr("c2f_round_size", opts["round_size"])
        st.sampler = _sampler(sampler, stage_space, _reseed(st, seed), opts)
        if stages:
            st.set_user_attr("stage", {"index": i + 1, "keys": keys, "fixed": fixed})
        recover_stale(st)
        runs_root = Path(trial_folders) / st_name if trial_folders is not None else None
        left = None if deadline is None else max(deadline - time.perf_counter(), 0.0)
        driver = StudyDriver(st, stage_space, keys, base, target, objective, on_progress, run_root=runs_root,
                             timeout=left)
        driver.progress.grid, driver.progress.deleted = grid, deleted if i == 0 else 0
        size = population_size
        auto_pop = (executor == "auto" and objective is None and trial_folders is None
                    and sampler in AUTO_POPULATION_SAMPLERS and auto_population(sp.base))
        if sampler == "coarse-to-fine" and (executor == "population" or (executor == "ray" and size)):
            from tunelab.execute.population import DEFAULT_SIZE

            # a round is at most one population: the next round needs this one's results
            size = min(population_size or DEFAULT_SIZE, opts["round_size"])
        with make_executor(workers, executor, size, pbt=pbt, population=auto_pop, ray=ray,
                           trial_timeout=trial_timeout) as runner:
            progress = driver.run(runner)
        value, best_vals, config, number = _best(st, sp, keys)
        fixed = {**fixed, **best_vals}
        if stages and best_vals:
            base = sp.apply(base, best_vals)
        studies.append(st)
        progresses.append(progress)
        result = TuneResult(st, value, fixed, config, number, studies, progress, where, progresses)
        if progress.stopped_early:  # a later stage would start from an unfinished one
            break
    result.profile = study_profile(progresses)
    store_profile(result.study, result.profile)
    return result


def store_profile(study: optuna.Study, profile: dict) -> None:
    """Keep the run's profile with the study (user attribute ``profile``), rounded to ms."""
    def rounded(v: Any) -> Any:
        return {k: rounded(x) for k, x in v.items()} if isinstance(v, dict) else (
            round(v, 3) if isinstance(v, float) else v)

    study.set_user_attr("profile", rounded(profile))


def _pbt_setup(space, objective, overrides, trials: int, workers: int, executor: str,
               population_size: Optional[int], pruner: str, stages: bool, interval: int, seed: Optional[int]):
    """(executor, population size, PBTConfig) of a population-based training, or a one-line error
    for what it cannot do."""
    from tunelab.population.pbt import PBTConfig, check_space

    if objective is not None:
        raise ConfigError("sampler='pbt' trains tunelab configs as one population; a user objective cannot be "
                          "copied mid-run; allowed: no objective")
    processes = executor == "processes"  # members as run folders in worker processes, copied by checkpoint
    bad = [(k, v) for k, v in (("executor", executor if executor not in ("auto", "population", "processes") else None),
                               ("pruner", pruner if pruner != "none" else None),
                               ("workers", workers if workers != 1 and not processes else None),
                               ("stages", True if stages else None)) if v is not None]
    if bad:
        key, value = bad[0]
        raise ConfigError(f"{key}={value!r} does not go with sampler='pbt' (members copied, not pruned; "
                          f"one population in one process, or run folders with executor='processes'); "
                          f"allowed: executor auto, population or processes (with workers), no pruner, "
                          f"no stages")
    if processes and population_size is not None:
        raise ConfigError(f"population_size={population_size} needs executor='population'; with "
                          f"executor='processes' every trial is a member: leave population_size out")
    if population_size is not None and population_size != trials:
        raise ConfigError(f"population_size={population_size} differs from trials={trials}; with sampler='pbt' "
                          f"every trial is a member of the one population: leave population_size out")
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ConfigError(f"interval={interval!r} is out of range; allowed: a whole number of epochs >= 1")
    sp = _with_overrides(load_space(space), overrides)
    check_space(list(sp.params))
    return ("processes" if processes else "population", None if processes else trials,
            PBTConfig(dict(sp.params), interval=interval, metric=sp.objective_metric, seed=0 if seed is None else seed))


def _sampler(name: str, space: SearchSpace, seed: Optional[int], opts: dict):
    try:
        return make_sampler(name, space, seed, **opts)
    except ConfigError as e:  # the sampler registry words its errors for the CLI's --sampler
        raise ConfigError(str(e).replace("--sampler ", "sampler=", 1).replace("--sampler", "sampler")) from None


def _plan(sp: SearchSpace, sampler: str, trials: int, stages: bool, seed: Optional[int],
          round_size: Optional[int], keep: float) -> list[tuple[list[str], SearchSpace, int, Optional[int], dict]]:
    """Per stage: its keys, its space, its trial target, the grid size (grid sampler) and the
    sampler options; every sampler is built once here so a bad one fails before anything runs."""
    stage_keys = sp.stages if stages else [list(sp.params)]
    if len(stage_keys) > trials:  # a stage with no trial would end the tune with "no trial completed"
        n = len(stage_keys)
        raise ConfigError(f"trials={trials} is out of range for {n} stages; "
                          f"allowed: at least one trial per stage ({n} or more)")
    budgets = [trials // len(stage_keys) + (1 if i < trials % len(stage_keys) else 0)
               for i in range(len(stage_keys))]
    plan = []
    for keys, budget in zip(stage_keys, budgets):
        stage_space = dataclasses.replace(sp, params={k: sp.params[k] for k in keys})
        grid = None
        if sampler == "grid":
            _sampler(sampler, stage_space, seed, {})  # a range without points: one line now
            grid = grid_size(stage_space)
        target = min(budget, grid) if grid is not None else budget
        opts = ({"round_size": round_size if round_size is not None else auto_round_size(target, len(keys)),
                 "keep": keep} if sampler == "coarse-to-fine" else {})
        _sampler(sampler, stage_space, seed, opts)
        plan.append((keys, stage_space, target, grid, opts))
    return plan
