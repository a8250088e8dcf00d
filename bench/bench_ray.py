"""Per-trial overhead of the Ray executor against the process executor, on one machine.

64 short digits trials (hidden [16], 3 epochs, lr log-uniform; the same sampler seed) through
``tunelab.tune`` in this process, SQLite storage, two trials in flight either way: the process
executor with 2 workers, and the Ray executor on a local Ray cluster of 2 CPUs (started before the
timing; its start is timed on its own). Two more rows train the same trials in population buckets
of 32 (``--population-size 32``): on the Ray cluster (a bucket per actor) and, as their baseline, on
the population executor's two worker processes. Interleaved rounds, medians.

Each row also gets its compute floor (bench/_floor.py): the epochs its trials trained (their recorded
histories, read from the study) x the single-epoch time of one such model with one thread (measured
first, in this run) / the cores in use (2: two trials or buckets at once, one thread each), and its
wall / floor. A population row can be below 1x floor: a stacked step of 32 models costs less than 32
single-model steps.

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
from _floor import FLOOR_NOTE, cores_in_use, epoch_seconds, epochs_trained, floor, ratio  # noqa: E402
from _results import append_record  # noqa: E402  (bench/_results.py)

SPACE = {"base": {"data": {"name": "digits"}, "model": {"hidden": [16]}, "training": {"epochs": 3, "threads": 1}},
         "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def one(executor: str, trials: int, ray_address: str | None) -> tuple[float, int]:
    """Wall seconds of one study with ``executor`` and the epochs its trials trained."""
    import tunelab

    kw = {"processes": {"executor": "processes", "workers": 2},
          "ray": {"executor": "ray", "workers": 2, "ray": {"address": ray_address}},
          "population": {"executor": "population", "workers": 2, "population_size": 32},
          "ray-population": {"executor": "ray", "workers": 2, "ray": {"address": ray_address},
                             "population_size": 32}}[executor]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = tunelab.tune(SPACE, trials=trials, storage=f"sqlite:///{tmp}/b.db", study="b", seed=0, **kw)
        wall = time.perf_counter() - t0
        return wall, epochs_trained(res.study.get_trials(deepcopy=False))


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
    # one such model (lr at the middle of the searched range), one thread, before any trial
    one_epoch = epoch_seconds(SPACE["base"], ["optimizer.lr=0.01"], epochs=8)
    print(f"tunelab epoch, one thread: {one_epoch * 1000:.1f} ms", flush=True)
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    start = time.perf_counter() - t0
    address = ray.get_runtime_context().gcs_address
    times: dict[str, list[float]] = {"processes": [], "ray": [], "population": [], "ray-population": []}
    epochs: dict[str, list[int]] = {ex: [] for ex in times}
    for _ in range(args.rounds):
        for ex in times:
            wall, n = one(ex, args.trials, address)
            times[ex].append(wall)
            epochs[ex].append(n)
            if not ray.is_initialized():  # the executor connected to the running cluster: stay connected
                ray.init(address=address, log_to_driver=False)
    ray.shutdown()
    after = uptime()
    print(after)
    med = {k: statistics.median(v) for k, v in times.items()}
    per = {k: v / args.trials * 1000 for k, v in med.items()}
    # every row: two trials (or buckets) at once, one thread each
    floors = {k: floor(v, int(statistics.median(epochs[k])), one_epoch, cores_in_use(2)) for k, v in med.items()}
    labels = {"processes": "`--executor processes --workers 2`",
              "ray": "`--executor ray` (local cluster, 2 CPUs, 1 CPU per trial)",
              "population": "`--executor population --population-size 32 --workers 2`",
              "ray-population": "`--executor ray --population-size 32` (a bucket per actor)"}
    print(f"\n| {args.trials} digits trials ([16], 3 epochs), 2 in flight, `tunelab.tune` in process | median s "
          f"| ms per trial | epochs | floor s | x floor |\n|---|---|---|---|---|---|")
    for k, label in labels.items():
        f = floors[k]
        print(f"| {label} | {med[k]:.1f} | {per[k]:.0f} | {f['epochs']} | {f['floor']:.2f} | {ratio(f['x_floor'])} |")
    print(f"\n{FLOOR_NOTE} One epoch: {one_epoch * 1000:.1f} ms; cores in use: {cores_in_use(2)}.")
    print(f"\nRay's overhead against processes: {per['ray'] - per['processes']:+.0f} ms per trial; "
          f"starting the local cluster took {start:.1f} s (not in the rows); in buckets of 32: "
          f"{per['ray-population'] - per['population']:+.0f} ms per trial against the population executor")
    append_record("ray", {"trials": args.trials, "median_s": med, "ms_per_trial": per, "cluster_start_s": start,
                          "all": times, "epoch_s": one_epoch, "epochs_all": epochs, "floor": floors,
                          "uptime_before": before, "uptime_after": after})


if __name__ == "__main__":
    main()
