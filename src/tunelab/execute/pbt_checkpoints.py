"""Population-based training on worker processes, through the panda trainer's checkpoints.

The population executor does PBT inside one stacked computation; this executor does it the way a
cluster would, for models the population cannot stack or members too big to share a process:
every member is a run folder trained in a worker process, ``interval`` epochs at a time. After each
round the members are ranked on the metric, and each member of the bottom quantile becomes a fork
of a top member's last checkpoint (``trainer.lineage.make_fork``: its weights, optimizer state,
schedule and early-stopping state, data position and random streams) with explored
hyperparameters (``population.pbt.explore``, the same rules and random stream as the population's
PBT), then every member resumes (``plan_resume``, the same path as ``tunelab resume``).

A member's trial keeps its own story: its history is the epochs it trained, before and after a
copy, and each copy is a ``{"kind": "pbt", ...}`` entry of its result (``from_trial``, the epoch,
both scores, the new values), as the population reports them, so the study report draws the same
lineage. Run folders live in a temporary folder removed at the end.

Example:
    >>> from tunelab.population.pbt import PBTConfig
    >>> CheckpointPBTExecutor(2, PBTConfig({}, interval=3)).pbt.interval
    3
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from tunelab.errors import ConfigError, TunelabError
from tunelab.execute.base import Decision, Event, TrialSpec
from tunelab.execute.trial import final_event

__all__ = ["CheckpointPBTExecutor"]


class CheckpointPBTExecutor:
    """PBT among all the specs it is given, ``workers`` member segments at a time."""

    def __init__(self, workers: int, pbt, threads_per_worker: Optional[int] = None) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"--workers={workers!r} is not allowed; use a whole number >= 1")
        self.workers, self.pbt, self.threads = workers, pbt, threads_per_worker

    def close(self) -> None:  # each run starts and ends its own worker pool
        pass

    def __enter__(self) -> "CheckpointPBTExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, trials: Iterable[TrialSpec], on_event: Callable[[Event], Decision]) -> None:
        from tunelab.config import from_dict

        specs = list(trials)  # every member at once: they are ranked together
        members = []
        for spec in specs:
            try:
                if spec.fn is not None:
                    raise ConfigError("population-based training trains tunelab configs; a user objective "
                                      "cannot be copied mid-run")
                members.append(_Member(spec, from_dict(spec.config)))
            except TunelabError as e:
                on_event(Event(spec.number, "failed", error=str(e)))
        if members:
            with tempfile.TemporaryDirectory(prefix="tunelab-pbt-") as root:
                self._rounds(members, Path(root), on_event)

    def _rounds(self, members: list["_Member"], root: Path, on_event: Callable[[Event], Decision]) -> None:
        from tunelab.trainer.threads import auto_threads, machine_load, usable_cores

        pbt = self.pbt
        threads = self.threads or auto_threads(usable_cores(), machine_load(), self.workers)
        rng = np.random.default_rng(pbt.seed)  # the population's PBT stream: the same plans for the same scores
        for i, m in enumerate(members):
            m.index, m.folder = i, root / f"member-{i:03d}"
            on_event(Event(m.spec.number, "start", metrics={"threads": threads}))
        pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(threads,))
        try:
            done, round_no = 0, 0
            while any(m.alive for m in members):
                round_no += 1
                last = max(m.cfg.training.epochs for m in members if m.alive)
                stop_at = done + pbt.interval
                self._train_round(pool, [m for m in members if m.alive], stop_at, on_event)
                done = stop_at
                going = [m for m in members if m.alive]
                if going and done < last:
                    _exploit_explore(going, members, pbt, rng, root, round_no)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _train_round(self, pool, alive: list["_Member"], stop_at: int, on_event) -> None:
        """Each member trains up to epoch ``stop_at`` (its last epoch at most); members that ended
        (completed, diverged, failed) report their result."""
        futures = {pool.submit(_segment, str(m.folder), m.spec.config if not m.started else None,
                               stop_at if stop_at < m.cfg.training.epochs else None, m.spec.test): m
                   for m in alive}
        outcomes = {}
        for fut in as_completed(futures):
            m = futures[fut]
            try:
                outcomes[m.index] = fut.result()
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - a failed member (or a dead worker) fails its trial
                outcomes[m.index] = e
        for m in sorted(alive, key=lambda m: m.index):  # events in member order: a reproducible driver log
            result = outcomes[m.index]
            m.started = True
            if isinstance(result, BaseException):
                m.alive = False
                reason = f"{type(result).__name__}: {result}".strip()
                on_event(Event(m.spec.number, "failed", len(m.history), error=reason))
                continue
            if result.status == "interrupted":
                raise KeyboardInterrupt(f"trial {m.spec.number} interrupted")
            for row in result.history:
                if row["epoch"] > len(m.history):
                    m.history.append(row)
                    on_event(Event(m.spec.number, "epoch", row["epoch"], row.get(m.spec.objective), row))
            if result.status != "stopped":  # completed, diverged, early-stopped: the member's end
                m.alive = False
                on_event(final_event(m.spec, m.own(result)))


@dataclasses.dataclass(eq=False)
class _Member:
    spec: TrialSpec
    cfg: object  # its RunConfig now (explored values after a copy)
    index: int = 0
    folder: Path = Path()
    started: bool = False
    alive: bool = True
    history: list = dataclasses.field(default_factory=list)  # the epochs this member trained
    lineage: list = dataclasses.field(default_factory=list)  # its copies

    def own(self, result):
        """``result`` (from its folder, whose checkpoint may descend from another member) with this
        member's own history and best epoch, and its copies as events."""
        vals = [(r.get("val_accuracy"), r["epoch"]) for r in self.history
                if isinstance(r.get("val_accuracy"), (int, float)) and math.isfinite(r["val_accuracy"])]
        best, epoch = max(vals, key=lambda v: (v[0], -v[1])) if vals else (math.nan, None)
        return dataclasses.replace(result, history=list(self.history), best_val_accuracy=best, best_epoch=epoch,
                                   events=[*result.events, *self.lineage])


def _exploit_explore(going: list[_Member], members: list[_Member], pbt, rng, root: Path, round_no: int) -> None:
    """Rank ``going`` on the metric; each of the bottom quantile forks a top member's checkpoint
    with explored values (plan and explore of the population's PBT)."""
    from tunelab.population.pbt import explore, plan, value_of
    from tunelab.trainer.lineage import make_fork, run_config

    scores = [m.history[-1].get(pbt.metric, math.nan) if m.history else math.nan for m in going]
    for d, s in plan(scores, pbt.quantile, rng, pbt.maximize):
        dst, src = going[d], going[s]
        values = explore({k: value_of(src.cfg, k) for k in pbt.space}, pbt, rng)
        child = root / f"member-{dst.index:03d}-round-{round_no}"
        make_fork(src.folder, overrides=[f"{k}={v!r}" for k, v in values.items()], out=child)
        dst.folder, dst.cfg = child, run_config(child)
        dst.lineage.append({"kind": "pbt", "epoch": len(dst.history), "from": src.index,
                            "from_trial": src.spec.number, "score": scores[d], "from_score": scores[s],
                            "values": values})


def _init_worker(threads: int) -> None:
    from tunelab.trainer.threads import set_threads

    set_threads(threads, as_default=True)


def _segment(run_dir: str, config: Optional[dict], stop_at: Optional[int], test: bool):
    """In a worker: train a new member (``config``) or resume its folder, up to epoch ``stop_at``
    (None: to its end); the RunResult without the model."""
    from tunelab import api
    from tunelab.config import from_dict
    from tunelab.trainer.lineage import plan_resume
    from tunelab.trainer.prepare import prepare

    def stop(ev):
        return "stop" if stop_at is not None and ev.epoch >= stop_at else None

    if config is not None:
        cfg, payload, event = from_dict(config), None, None
    else:
        plan = plan_resume(run_dir)
        cfg, payload, event = plan.cfg, plan.payload, plan.event
    run = prepare(cfg, cache=True)
    result = api._execute(run, Path(run_dir), payload, {"pbt_member": True}, event=event, on_epoch=stop,
                          figure=False, test=test)
    result.model = None
    return result
