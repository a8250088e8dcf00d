"""Storage cost per trial: the study driver against Optuna's one-commit-per-call pattern.

N no-op trials (a user objective that reports E epoch values and returns at once), stored in a
fresh SQLite file (tunelab's default storage), run two ways in the same process, interleaved:

- ``per-call``: a plain Optuna loop making the writes the driver made before it batched them
  (ask, four attributes, the worker's pid, one ``report`` per epoch, three attributes, tell), each
  its own commit — the way Optuna users write a study loop;
- ``tunelab``: ``tunelab.tune(..., objective=...)`` with the inline executor: the driver gathers a
  trial's attributes and epoch values and writes them in one transaction (no pruner reads them).

    python bench/bench_storage.py                     # 1000 trials x 20 epochs, 3 rounds
    python bench/bench_storage.py --trials 200 --rounds 1

Prints ms per trial (median over rounds) and appends a JSON line to bench/results/bench_storage.jsonl.
The `uptime` lines say what else ran.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_record  # noqa: E402  (bench/_results.py)


def noop(config, reporter):
    for epoch in range(1, config["epochs"] + 1):
        reporter.report(0.5, epoch)
    return 0.5


def per_call(url: str, trials: int, epochs: int) -> float:
    import os

    import optuna

    study = optuna.create_study(storage=url, study_name="b", direction="maximize",
                                pruner=optuna.pruners.NopPruner())  # as tune's default: no pruner
    dists = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    t0 = time.perf_counter()
    for _ in range(trials):
        trial = study.ask(dists)
        for key, value in (("config", {"x": trial.params["x"], "epochs": epochs}), ("params", trial.params),
                           ("seed", 0), ("versions", {"optuna": optuna.__version__})):
            trial.set_user_attr(key, value)
        trial.set_user_attr("pid", os.getpid())
        for epoch in range(1, epochs + 1):
            trial.report(0.5, epoch)
            trial.should_prune()
        trial.set_user_attr("history", [{"value": 0.5}] * epochs)
        trial.set_user_attr("duration_s", 0.0)
        trial.set_user_attr("result", {"value": 0.5})
        study.tell(trial, 0.5)
    return time.perf_counter() - t0


def driver(url: str, trials: int, epochs: int) -> float:
    import tunelab

    space = {"base": {"epochs": epochs}, "space": {"x": {"uniform": [0.0, 1.0]}}}
    t0 = time.perf_counter()
    tunelab.tune(space, trials=trials, storage=url, study="b", objective=noop, seed=0, sampler="random",
                 executor="inline")
    return time.perf_counter() - t0


def main() -> None:
    import optuna

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(before)
    times: dict[str, list[float]] = {"per-call": [], "tunelab": []}
    for _ in range(args.rounds):
        for name, fn in (("per-call", per_call), ("tunelab", driver)):
            with tempfile.TemporaryDirectory() as tmp:
                times[name].append(fn(f"sqlite:///{tmp}/s.db", args.trials, args.epochs) / args.trials * 1000)
    after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(after)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n| {args.trials} no-op trials x {args.epochs} epoch values, SQLite file | ms per trial (median of "
          f"{args.rounds}) |\n|---|---|")
    print(f"| Optuna, one commit per call (the driver before) | {med['per-call']:.1f} |")
    print(f"| tunelab driver, a trial's writes in one transaction | {med['tunelab']:.1f} |")
    print(f"\n{med['per-call'] / med['tunelab']:.2f}x less storage time per trial")
    append_record("storage", {"trials": args.trials, "epochs": args.epochs, "ms_per_trial": med, "all": times,
                              "uptime_before": before, "uptime_after": after})


if __name__ == "__main__":
    main()
