"""Per-trial overhead of the Ray executor against the process executor, on one machine.

64 short digits trials (hidden [16], 3 epochs, lr log-uniform; the same sampler seed) through
``tunelab.tune`` in this process, SQLite storage, two trials in flight either way: the process
executor with 2 workers, and the Ray executor on a local Ray cluster of 2 CPUs (started before the
timing; its start is timed on its own). Two more rows train the same trials in population buckets
of 32 (``--population-size 32``): on the Ray cluster (a bucket per actor) and, as their baseline, on
the population executor's two worker processes. Interleaved rounds, medians.

    python bench/bench_ray.py                 # 3 rounds, about 3 minutes on 2 cores
    python bench/bench_ray.py --rounds 1 --trials 32

Prints a markdown table and appends a JSON line to bench/results/bench_ray.jsonl.
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

SPACE = {"base": {"data": {"name": "digits"}, "model": {"hidden": [16]}, "training": {"epochs": 3, "threads": 1}},
         "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def one(executor: str, trials: int, ray_address: str | None) -> float:
    import tunelab

    kw = {"processes": {"executor": "processes", "workers": 2},
          "ray": {"executor": "ray", "workers": 2, "ray": {"address": ray_address}},
          "population": {"executor": "population", "workers": 2, "population_size": 32},
          "ray-population": {"executor": "ray", "workers": 2, "ray": {"address": ray_address},
                             "population_size": 32}}[executor]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        tunelab.tune(SPACE, trials=trials, storage=f"sqlite:///{tmp}/b.db", study="b", seed=0, **kw)
        return time.perf_counter() - t0


def main() -> None:
    import optuna
    import ray

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    before = uptime()
    print(before)
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    start = time.perf_counter() - t0
    address = ray.get_runtime_context().gcs_address
    times: dict[str, list[float]] = {"processes": [], "ray": [], "population": [], "ray-population": []}
    for _ in range(args.rounds):
        for ex in times:
            times[ex].append(one(ex, args.trials, address))
            if not ray.is_initialized():  # the executor connected to the running cluster: stay connected
                ray.init(address=address, log_to_driver=False)
    ray.shutdown()
    after = uptime()
    print(after)
    med = {k: statistics.median(v) for k, v in times.items()}
    per = {k: v / args.trials * 1000 for k, v in med.items()}
    print(f"\n| {args.trials} digits trials ([16], 3 epochs), 2 in flight, `tunelab.tune` in process | median s "
          f"| ms per trial |\n|---|---|---|")
    print(f"| `--executor processes --workers 2` | {med['processes']:.1f} | {per['processes']:.0f} |")
    print(f"| `--executor ray` (local cluster, 2 CPUs, 1 CPU per trial) | {med['ray']:.1f} | {per['ray']:.0f} |")
    print(f"| `--executor population --population-size 32 --workers 2` | {med['population']:.1f} "
          f"| {per['population']:.0f} |")
    print(f"| `--executor ray --population-size 32` (a bucket per actor) | {med['ray-population']:.1f} "
          f"| {per['ray-population']:.0f} |")
    print(f"\nRay's overhead against processes: {per['ray'] - per['processes']:+.0f} ms per trial; "
          f"starting the local cluster took {start:.1f} s (not in the rows); in buckets of 32: "
          f"{per['ray-population'] - per['population']:+.0f} ms per trial against the population executor")
    append_record("ray", {"trials": args.trials, "median_s": med, "ms_per_trial": per, "cluster_start_s": start,
                          "all": times, "uptime_before": before, "uptime_after": after})


if __name__ == "__main__":
    main()
