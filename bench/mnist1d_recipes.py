"""Test accuracy and time of the three MNIST-1D recipes in examples/mnist1d, over seeds.

    python bench/mnist1d_recipes.py                 # 3 configs x seeds 0..9, 1 thread
    python bench/mnist1d_recipes.py --seeds 3 --configs cnn1d
    python bench/mnist1d_recipes.py --record        # also append a JSON line to bench/results/

Trains each config with tunelab.train (training.seed=0..N-1, training.threads=1, nothing
saved) and prints a markdown table: mean and sd (n-1) of the test accuracy, min and max,
seconds per run (wall clock around tunelab.train; the first run of the process also
generates MNIST-1D, about 2 s) and the training seconds tunelab reports. The `uptime` line
before and after says how busy the machine was.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

import tunelab

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["logistic", "residual_mlp", "cnn1d"]  # examples/mnist1d/<name>.yaml


def uptime() -> str:
    """The ``uptime`` line (load averages), or why there is none."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        return f"(uptime unavailable: {e})"


def measure(name: str, seeds: int, threads: int) -> dict:
    """Train examples/mnist1d/<name>.yaml once per seed; accuracy and time statistics."""
    config = ROOT / "examples" / "mnist1d" / f"{name}.yaml"
    accs, walls, trains = [], [], []
    for seed in range(seeds):
        start = time.perf_counter()
        result = tunelab.train(config, [f"training.seed={seed}", f"training.threads={threads}"], save=False)
        walls.append(time.perf_counter() - start)
        trains.append(result.seconds)
        accs.append(result.test_accuracy)
        print(f"  {name} seed {seed}: test accuracy {result.test_accuracy:.4f}, {walls[-1]:.1f} s", flush=True)
    sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
    return dict(config=str(config.relative_to(ROOT)), seeds=seeds, test_accuracy=accs,
                mean=statistics.fmean(accs), sd=sd, min=min(accs), max=max(accs),
                wall_seconds=statistics.fmean(walls), train_seconds=statistics.fmean(trains))


def table(rows: list[dict]) -> str:
    """The results as a markdown table."""
    lines = ["| config | seeds | test accuracy (mean ± sd) | min | max | s/run (wall) | s/run (train) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['seeds']} | {r['mean']:.4f} ± {r['sd']:.4f} | {r['min']:.4f} | "
                     f"{r['max']:.4f} | {r['wall_seconds']:.1f} | {r['train_seconds']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 per config (default 10)")
    parser.add_argument("--configs", nargs="+", default=CONFIGS, choices=CONFIGS, help="which recipes")
    parser.add_argument("--threads", type=int, default=1, help="training.threads (default 1)")
    parser.add_argument("--record", action="store_true", help="append a JSON line to bench/results/")
    args = parser.parse_args()
    before = uptime()
    print(f"uptime before: {before}", flush=True)
    start = time.perf_counter()
    rows = [measure(name, args.seeds, args.threads) for name in args.configs]
    after = uptime()
    print()
    print(table(rows))
    print()
    print(f"uptime before: {before}")
    print(f"uptime after:  {after}")
    print(f"total: {time.perf_counter() - start:.0f} s, training.threads={args.threads}")
    if args.record:
        from _results import append_record  # bench/_results.py (scripts run from bench/)

        print(append_record("mnist1d_recipes", dict(runs=rows, uptime_before=before, uptime_after=after)))


if __name__ == "__main__":
    main()
