"""Population-based training against random search at the same budget, on a problem where the best
learning rate changes while the network trains.

MNIST-1D, an MLP [100, 100], SGD with momentum, 24 epochs, lr searched log-uniform in [1e-3, 1]:
a large lr makes fast progress early and stalls late; a small one is slow throughout, so a good
schedule beats every constant lr. Both sides train 8 members for 24 epochs each (the same budget,
on the population executor): random search keeps each member's lr; PBT (interval 4) lets the
bottom quarter copy the top quarter and perturb its lr. Compared: the best final validation
accuracy of each study, paired by seed (the same initial lrs: both sample them with that seed).

Each side also gets its compute floor (bench/_floor.py), over all seeds: the epochs its members
trained (their recorded histories) x the single-epoch time of one such MLP with one thread (measured
first, in this run) / the cores in use (1: one population in one process, one thread), and its wall /
floor. Both sides are populations (8 members as one stacked computation), so either can come in
below 1x floor.

    python bench/bench_pbt.py            # 10 seeds, about a minute on one core
    python bench/bench_pbt.py --seeds 2  # a look (the paired test needs two seeds at least)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _floor import FLOOR_NOTE, cores_in_use, epoch_seconds, epochs_trained, floor, ratio  # noqa: E402
from _results import append_record  # noqa: E402

import tunelab  # noqa: E402

SPACE = {"base": {"data": {"name": "mnist1d", "scaling": "none"}, "model": {"hidden": [100, 100]},
                  "optimizer": {"name": "momentum"}, "training": {"epochs": 24, "threads": 1, "batch_size": 100}},
         "space": {"optimizer.lr": {"log_uniform": [1e-3, 1.0]}}}


def best_final(result) -> float:
    return max(t.user_attrs["history"][-1]["val_accuracy"] for t in result.study.trials)


def timed(**kw) -> tuple[float, float, int]:
    """One study: its best final val accuracy, its wall seconds and the epochs its members trained."""
    t0 = time.perf_counter()
    res = tunelab.tune(SPACE, trials=8, **kw)
    wall = time.perf_counter() - t0
    return best_final(res), wall, epochs_trained(res.study.trials)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args()
    if args.seeds < 2:
        ap.error(f"--seeds={args.seeds} is too few; allowed: 2 or more (a standard deviation and a paired test)")
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(up)
    # one such MLP (lr at the geometric middle of the searched range), one thread, before any study
    one_epoch = epoch_seconds(SPACE["base"], ["optimizer.lr=0.03"])
    print(f"tunelab epoch, one thread: {one_epoch * 1000:.1f} ms", flush=True)
    pbt, rnd = [], []
    walls: dict[str, list[float]] = {"pbt": [], "random": []}
    epochs: dict[str, list[int]] = {"pbt": [], "random": []}
    for seed in range(args.seeds):
        for side, acc, kw in (("pbt", pbt, dict(sampler="pbt", interval=4, seed=seed)),
                              ("random", rnd, dict(sampler="random", seed=seed, executor="population",
                                                   population_size=8))):
            best, wall, n = timed(**kw)
            acc.append(best)
            walls[side].append(wall)
            epochs[side].append(n)
        print(f"seed {seed}: pbt {pbt[-1]:.4f}  random {rnd[-1]:.4f}")
    diff = [a - b for a, b in zip(pbt, rnd)]
    test = stats.wilcoxon(pbt, rnd)
    print(f"\n| best final val accuracy, {args.seeds} seeds | mean | sd |\n|---|---|---|")
    print(f"| PBT (8 members, interval 4) | {statistics.mean(pbt):.4f} | {statistics.stdev(pbt):.4f} |")
    print(f"| random search (8 trials) | {statistics.mean(rnd):.4f} | {statistics.stdev(rnd):.4f} |")
    print(f"\nPBT - random: mean {statistics.mean(diff):+.4f}, better in {sum(d > 0 for d in diff)} of "
          f"{len(diff)} seeds, Wilcoxon p = {test.pvalue:.3g}")
    # both sides: one population of 8 in this process, one thread
    floors = {side: floor(sum(walls[side]), sum(epochs[side]), one_epoch, cores_in_use(1)) for side in walls}
    print(f"\n| all {args.seeds} seeds | wall s | epochs | floor s | x floor |\n|---|---|---|---|---|")
    for side, label in (("pbt", "PBT (8 members, interval 4)"), ("random", "random search (8 trials)")):
        f = floors[side]
        print(f"| {label} | {f['wall']:.1f} | {f['epochs']} | {f['floor']:.1f} | {ratio(f['x_floor'])} |")
    print(f"\n{FLOOR_NOTE} One epoch: {one_epoch * 1000:.1f} ms; cores in use: {cores_in_use(1)}.")
    append_record("pbt", {"uptime": up, "pbt": pbt, "random": rnd, "wilcoxon_p": test.pvalue, "epoch_s": one_epoch,
                          "walls": walls, "epochs": epochs, "floor": floors})


if __name__ == "__main__":
    main()
