"""One place for the study benchmarks' compute floor: the wall time a study's training work would
take with every core in use busy training and nothing else.

Compute floor of a row = epoch-equivalents it trained x the single-epoch time of one such model
(tunelab's epoch: training plus its evaluations, one thread, measured in the same run) / the cores in
use (the trials trained at once, each on its threads, capped by the machine's cores). A row's wall /
floor ("x floor") says how far it is from that: the driver, the storage, process starts, data loading
and idle cores all count against it. A population row (many models trained as one stacked
computation) can come in below 1: one stacked step of K models costs less than K steps of one.
"""

from __future__ import annotations

import os
import statistics
from typing import Iterable, Sequence

FLOOR_NOTE = ("floor s = epochs trained x the one-thread single-epoch time / cores in use; x floor = wall / floor. "
              "A population row (many models as one stacked computation) can be below 1x: a stacked step of K "
              "models costs less than K single-model steps.")


def epoch_seconds(base: dict, overrides: Sequence[str] = (), epochs: int = 4) -> float:
    """tunelab's single-epoch time (train + evaluations) of one model of ``base`` (a space's base
    config, with ``overrides`` fixing what the space searches) with one thread: the median of the
    epochs after the first (a warm-up). torch's thread count is restored afterwards."""
    import torch

    from tunelab.config import from_dict
    from tunelab.trainer.fit import fit
    from tunelab.trainer.prepare import prepare

    threads = torch.get_num_threads()
    raw = {**base, "training": {**base.get("training", {}), "epochs": epochs, "threads": 1}}
    cfg = from_dict(raw, list(overrides))
    try:
        run = prepare(cfg, cache=True)
        result = fit(cfg, run.data, run.model, test=False)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(h["seconds"] for h in result.history[1:])


def epochs_trained(trials: Iterable) -> int:
    """Epochs trained by a study's trials (Optuna FrozenTrials): each trial's recorded history
    (its intermediate values where it has none: a user objective), summed; pruned and failed
    trials count the epochs they trained."""
    return sum(len(t.user_attrs.get("history") or t.intermediate_values) for t in trials)


def study_epochs(storage: str, study: str) -> int:
    """``epochs_trained`` of the study ``study`` read back from ``storage`` (a URL: a `tunelab tune`
    run in another process)."""
    import optuna

    return epochs_trained(optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False))


def cores_in_use(workers: int, threads: int = 1) -> int:
    """Cores a row keeps busy: ``workers`` trials (or populations) at once on ``threads`` threads
    each, capped by the machine's cores."""
    return max(1, min(workers * threads, os.cpu_count() or 1))


def floor(wall: float, epochs: int, epoch_s: float, cores: int) -> dict:
    """The floor fields of a row: wall s, epochs trained, cores, floor s, wall / floor."""
    fl = epochs * epoch_s / cores
    return {"wall": wall, "epochs": epochs, "cores": cores, "floor": fl, "x_floor": wall / fl if fl > 0 else None}


def ratio(x: float | None) -> str:
    """``x floor`` as printed: two decimals, or a dash where there is no floor."""
    return "-" if x is None else f"{x:.2f}"
