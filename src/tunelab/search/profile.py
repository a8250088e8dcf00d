"""A study's wall time, broken down: what the workers did with their time and what the driver did.

From the driver's own timing records (``Progress``: its sampler, storage and pruner calls, each
trial's parts as its worker timed them, the executor's process starts). Two views of one run:

- **workers** — the worker-seconds (``workers x wall``) the run had: training, evaluation, waiting
  for the driver's answer after each epoch (``decision``), loading data, building the model, the run
  folder, the last evaluation (``finish``), starting worker processes, hand-over and messages
  (``handoff``: a trial's time as the driver saw it, less its parts and its worker's start), and ``idle`` (a worker with no
  trial: the driver was asking, writing, or no trial was left for it). They add up to
  ``workers x wall``.
- **floor** — training and evaluation alone, divided by the workers: the wall time the run would
  take if nothing but its training work ran (``floor_s``; the wall time over it is the overhead).
- **driver** — the driver's own wall seconds: ``ask`` (the sampler), ``storage``, ``pruner``,
  ``driver`` (the rest of its bookkeeping) and ``waiting`` (for the workers).

``tunelab tune --profile`` prints it and every tune stores it in the study (user attribute
``profile``).

Example:
    >>> from tunelab.search.study import Progress
    >>> p = Progress(2, workers=2, timing={"wall": 10.0, "in_driver": 1.0, "ask": 0.5},
    ...              work={"train": 12.0, "eval": 3.0, "trials": 18.0, "epochs": 8})
    >>> prof = study_profile([p])
    >>> prof["workers"]["train"], prof["workers"]["handoff"], prof["workers"]["idle"]
    (12.0, 3.0, 2.0)
    >>> round(sum(prof["workers"].values()), 6) == prof["worker_seconds"]
    True
"""

from __future__ import annotations

from typing import Any, Sequence

from tunelab.timing import merged

__all__ = ["study_profile", "profile_lines", "WORKER_PARTS"]

# the parts a trial's worker times (tunelab.execute.trial, tunelab.trainer.fit), in display order
WORKER_PARTS = {"train": "training", "eval": "evaluation (validation, train-eval subset)",
                "callback": "waiting for the driver's answer after each epoch", "data": "loading data",
                "model": "building the model", "folder": "run folders", "finish": "last evaluation (test)"}


def study_profile(progresses: Sequence[Any]) -> dict[str, Any]:
    """The breakdown of one tune run (all its stages' ``Progress`` records), JSON-ready."""
    wall = sum(p.timing.get("wall", 0.0) for p in progresses)
    capacity = sum(p.timing.get("wall", 0.0) * p.workers for p in progresses)
    work = merged(*(p.work for p in progresses))
    starts = sum(p.executor.get("process_start", 0.0) for p in progresses)
    parts = {k: work.get(k, 0.0) for k in WORKER_PARTS}
    busy = work.get("trials", 0.0)
    # a worker starts while its first trial waits for it: the trials' time their parts leave
    # unexplained is its start, then hand-over (a start begun before the run counts only here)
    unexplained = max(busy - sum(parts.values()), 0.0)
    started = min(starts, unexplained)
    workers = {**parts, "process_start": started, "handoff": unexplained - started,
               "idle": max(capacity - busy, 0.0)}
    if busy > 1.05 * capacity or (busy > 0 and not any(parts.values())):
        workers = {}  # trials trained together (a population): no per-worker parts to show
    split = merged(*(p.split() for p in progresses))
    driver = {k: split[k] for k in ("ask", "storage", "pruner", "driver")}
    driver["waiting"] = split["executor"]
    at_once = max((p.workers for p in progresses), default=1)
    stacks = [p.executor for p in progresses if "slot_steps" in p.executor]  # the population executor's
    population = {}
    if stacks:
        keys = ("member_steps", "slot_steps", "member_steps_open", "slot_steps_open", "refilled")
        population = {k: sum(s.get(k, 0) for s in stacks) for k in keys}
        slots, open_slots = population["slot_steps"], population["slot_steps_open"]
        population["occupancy"] = population["member_steps"] / slots if slots else None
        population["occupancy_open"] = population["member_steps_open"] / open_slots if open_slots else None
    return {"population": population, "wall_s": wall, "workers_at_once": at_once, "worker_seconds": sum(workers.values()),
            # the training and evaluation alone, spread over the workers: the wall time with nothing else
            "floor_s": (parts["train"] + parts["eval"]) / at_once, "epochs": int(work.get("epochs", 0)),
            "trials": sum(p.finished_this_run for p in progresses),
            "workers": workers, "driver": driver}


def profile_lines(profile: dict[str, Any]) -> list[str]:
    """The profile as text lines (seconds and shares), for the end of ``tunelab tune --profile``."""
    total = profile["worker_seconds"] or 1.0
    wall = profile["wall_s"] or 1.0
    names = {**WORKER_PARTS, "process_start": "starting worker processes",
             "handoff": "hand-over and messages", "idle": "idle (no trial to run)"}
    out = [f"profile: {profile['wall_s']:.1f} s wall, {profile['workers_at_once']} worker(s) = "
           f"{profile['worker_seconds']:.1f} worker-seconds; {profile['trials']} trials, "
           f"{profile['epochs']} epochs trained",
           (f"  compute floor (training and evaluation alone, over the workers): {profile['floor_s']:.1f} s; "
            f"the wall time is {profile['wall_s'] / profile['floor_s']:.2f}x that" if profile["floor_s"] > 0 else
            "  compute floor: not measured (the trials trained together; the driver's wait below is their time)"),
           "  where the workers' time went:"]
    out += [f"    {names[k]:<52}{v:>9.2f} s {100 * v / total:>5.1f}%" for k, v in profile["workers"].items()]
    if not profile["workers"]:
        out.append("    (not measured: the trials trained together, as one population)")
    pop = profile.get("population") or {}
    if pop.get("occupancy") is not None:
        before = pop.get("occupancy_open")
        out.append(f"  the population's stacks: {pop['occupancy']:.0%} of their slots trained a member on average "
                   f"(occupancy)" + (f", {before:.0%} until the budget ran out" if before is not None else "")
                   + f"; {pop['refilled']} trials took the slot of one that had left")
    out.append("  the driver's wall time:")
    labels = {"ask": "sampler (ask)", "storage": "storage", "pruner": "pruner", "driver": "bookkeeping, display",
              "waiting": "waiting for the workers"}
    out += [f"    {labels[k]:<52}{v:>9.2f} s {100 * v / wall:>5.1f}%" for k, v in profile["driver"].items()]
    if "report_s" in profile:
        out.append(f"  after the search: leaderboard and best.yaml {profile['report_s']:.2f} s")
    return out
