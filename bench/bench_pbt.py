"""Population-based training against random search at the same budget, on a problem where the best
learning rate changes while the network trains.

MNIST-1D, an MLP [100, 100], SGD with momentum, 24 epochs, lr searched log-uniform in [1e-3, 1]:
a large lr makes fast progress early and stalls late; a small one is slow throughout, so a good
schedule beats every constant lr. Both sides train 8 members for 24 epochs each (the same budget,
on the population executor): random search keeps each member's lr; PBT (interval 4) lets the
bottom quarter copy the top quarter and perturb its lr. Compared: the best final validation
accuracy of each study, paired by seed (the same initial lrs: both sample them with that seed).

    python bench/bench_pbt.py            # 10 seeds, about a minute on one core
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append_record  # noqa: E402

import tunelab  # noqa: E402

SPACE = {"base": {"data": {"name": "mnist1d", "scaling": "none"}, "model": {"hidden": [100, 100]},
                  "optimizer": {"name": "momentum"}, "training": {"epochs": 24, "threads": 1, "batch_size": 100}},
         "space": {"optimizer.lr": {"log_uniform": [1e-3, 1.0]}}}


def best_final(result) -> float:
    return max(t.user_attrs["history"][-1]["val_accuracy"] for t in result.study.trials)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args()
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(up)
    pbt, rnd = [], []
    for seed in range(args.seeds):
        pbt.append(best_final(tunelab.tune(SPACE, sampler="pbt", trials=8, interval=4, seed=seed)))
        rnd.append(best_final(tunelab.tune(SPACE, sampler="random", trials=8, seed=seed, executor="population",
                                           population_size=8)))
        print(f"seed {seed}: pbt {pbt[-1]:.4f}  random {rnd[-1]:.4f}")
    diff = [a - b for a, b in zip(pbt, rnd)]
    test = stats.wilcoxon(pbt, rnd)
    print(f"\n| best final val accuracy, {args.seeds} seeds | mean | sd |\n|---|---|---|")
    print(f"| PBT (8 members, interval 4) | {statistics.mean(pbt):.4f} | {statistics.stdev(pbt):.4f} |")
    print(f"| random search (8 trials) | {statistics.mean(rnd):.4f} | {statistics.stdev(rnd):.4f} |")
    print(f"\nPBT - random: mean {statistics.mean(diff):+.4f}, better in {sum(d > 0 for d in diff)} of "
          f"{len(diff)} seeds, Wilcoxon p = {test.pvalue:.3g}")
    append_record("pbt", {"uptime": up, "pbt": pbt, "random": rnd, "wilcoxon_p": test.pvalue})


if __name__ == "__main__":
    main()
