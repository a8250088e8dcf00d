"""The compare driver: every arm over the same seeds, through the tune executors and storage.

A compare is an Optuna study named ``compare:NAME``: one trial per (arm, seed), with the arm,
the seed, the resolved config, the per-epoch history and the final metrics (test included:
compare reports on test) as user attributes; the arm's name and the seed are also the trial's
parameters, so optuna-dashboard shows and filters runs by arm. The study records the design, so a compare can
be interrupted and resumed (finished runs are kept; interrupted ones, and failed ones of an earlier
command, whose worker may have died, rerun) and its report rebuilt from storage alone.

Seed ``s`` of every arm sets ``training.seed = s``: the same data order and, where shapes
allow, the same initial weights in every arm (common random numbers), so differences pair.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any, Callable, Iterator, Optional

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.trial import TrialState

from tunelab.analysis.designs import Arm, arm_config
from tunelab.errors import ConfigError
from tunelab.execute.base import TrialSpec
from tunelab.search.drivers import ask_lock, create_study, driver_alive
from tunelab.search.storage import storage_errors, write_trial
from tunelab.search.study import Progress, StudyDriver, recover_stale, tensorboard_root

__all__ = ["run_compare", "compare_study_name", "load_design", "CompareDriver"]


def compare_study_name(name: str) -> str:
    return f"compare:{name}"


class _FixedSampler(BaseSampler):
    """Gives each parameter the value set in ``values`` before ``ask``: a compare chooses nothing."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def sample_independent(self, study, trial, param_name: str, param_distribution) -> Any:
        return self.values[param_name]


class CompareDriver(StudyDriver):
    """A StudyDriver whose trials are the fixed (arm, seed) runs still missing from storage."""

    requeue_params = False  # an interrupted run is rerun because its (arm, seed) pair is missing

    def __init__(self, study: optuna.Study, base: dict, arms: list[Arm], seeds: list[int],
                 on_progress: Optional[Callable[[Progress], None]] = None) -> None:
        self.arms, self.seeds = arms, seeds
        # runs/tensorboard/compare-NAME, like the report's runs/compare-NAME
        log_root = tensorboard_root(f"compare-{study.study_name.split(':', 1)[-1]}")
        super().__init__(study, None, [], base, len(arms) * len(seeds), None, on_progress, log_root)
        names = [a.name for a in arms]
        self.arm_labels = names if len(set(names)) == len(names) else [f"{i}: {n}" for i, n in enumerate(names)]
        self.param_dists = {"arm": CategoricalDistribution(self.arm_labels),
                            "seed": IntDistribution(min(seeds), max(seeds))}
        self.fixed = study.sampler = _FixedSampler()
        self.defer_reports = True  # nothing prunes a compare: epoch values are written with the result

    def _pairs(self) -> set[tuple[int, int]]:
        """(arm, seed) pairs that need no run: done, or running or failed under a live driver (this
        one or another). A pair whose only runs failed under drivers that have ended (a worker that
        died, an interrupt) is run again; its failed runs stay, and the analysis takes the rerun."""
        beats, now = self.study._storage.get_study_system_attrs(self.study._study_id), time.time()
        done: set[tuple[int, int]] = set()
        for t in self.study.get_trials(deepcopy=False):
            a = t.user_attrs
            if "arm" not in a or a.get("requeued"):
                continue
            live = t.state in (TrialState.RUNNING, TrialState.FAIL) and driver_alive(
                self.study, a.get("driver"), now, beats)
            if t.state == TrialState.COMPLETE or live:
                done.add((a["arm"], a["seed"]))
        return done

    def specs(self) -> Iterator[TrialSpec]:
        for seed in self.seeds:  # seed-major: early results already pair across arms
            for i, arm in enumerate(self.arms):
                config = arm_config(self.base, arm, seed)
                with self.timed("in_driver"), ask_lock(self.study):  # a pair is claimed by one driver
                    if (i, seed) in self._pairs():
                        continue
                    self.fixed.values = {"arm": self.arm_labels[i], "seed": seed}
                    with self.timed("ask"):
                        trial = self.study.ask(self.param_dists)
                    attrs = {"arm": i, "arm_name": arm.name, "seed": seed, "config": config,
                             "driver": self.driver_id}
                    log_dir = self.log_dir(trial, config, attrs)
                    with self.timed("storage"):
                        write_trial(self.study, trial._trial_id, attrs)
                self.live[trial.number], self.t0[trial.number] = trial, _now()
                self.values[trial.number] = {"arm": arm.name, "seed": seed}  # for its log line
                self._notify("running")
                yield TrialSpec(trial.number, config, "val_accuracy", None, seed, test=True, log_dir=log_dir)

    def handle(self, ev):
        if ev.kind == "epoch":  # no pruning in a compare: every run goes to its end
            trial = self.live.get(ev.number)
            if trial is not None:
                self.history.setdefault(ev.number, []).append(ev.metrics)
                self.report(trial, ev)
            return "continue"
        return super().handle(ev)


def _now() -> float:
    import time

    return time.perf_counter()


def _save_design(study: optuna.Study, base: dict, arms: list[Arm], seeds: list[int], meta: dict) -> None:
    design = {"base": base, "arms": [asdict(a) for a in arms], "seeds": seeds, **meta}
    stored = study.user_attrs.get("design")
    if stored is None:
        study.set_user_attr("design", json.loads(json.dumps(design)))
    elif ([a["overrides"] for a in stored["arms"]] != [a.overrides for a in arms] or stored["base"] != base
          or stored["seeds"] != seeds):
        raise ConfigError(f"name={study.study_name.split(':', 1)[1]!r} already holds a compare with "
                          f"another design; choose a new name")


def load_design(study: optuna.Study) -> dict[str, Any]:
    design = study.user_attrs.get("design")
    if design is None:
        raise ConfigError(f"study {study.study_name!r} is not a compare (it has no design)")
    return design


def run_compare(base: dict, arms: list[Arm], seeds: list[int], *, name: str, storage: str,
                workers: int = 1, meta: Optional[dict] = None,
                on_progress: Optional[Callable[[Progress], None]] = None, executor: str = "auto",
                population_size: Optional[int] = None, ray: Optional[dict] = None,
                trial_timeout: Optional[float] = None) -> optuna.Study:
    """Run every (arm, seed) not yet in storage; return the compare's study (``executor``,
    ``population_size``, ``ray`` and ``trial_timeout`` as for ``tune``)."""
    from tunelab.execute import auto_population, make_executor
    from tunelab.trainer.tensorboard import require_tensorboard, wants_tensorboard

    if any(wants_tensorboard(arm_config(base, arm, seeds[0])) for arm in arms):
        require_tensorboard()  # one line now, not one failed run per (arm, seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with storage_errors(storage):
        study = create_study(study_name=compare_study_name(name), storage=storage, direction="maximize")
    _save_design(study, base, arms, seeds, meta or {})
    recover_stale_compare(study)
    driver = CompareDriver(study, base, arms, seeds, on_progress)
    population = executor == "auto" and auto_population(base)  # fixed (arm, seed) runs: nothing waits on results
    with make_executor(workers, executor, population_size, population=population, ray=ray,
                       trial_timeout=trial_timeout) as runner:
        driver.run(runner)
    return study


def recover_stale_compare(study: optuna.Study) -> None:
    """RUNNING trials of a dead driver: mark failed + requeued (their pair is simply rerun)."""
    recover_stale(study, "interrupted: the driver stopped", requeue_params=False)
