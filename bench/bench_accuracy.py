"""Accuracy of the reference configs on real data, from real runs.

    TUNELAB_DATA=../shared/data python bench/bench_accuracy.py

Trains each config once (seed 0) with tunelab.train, prints test accuracy beside the target,
and appends a JSON line to bench/results/bench_accuracy.jsonl.
"""

from __future__ import annotations

from pathlib import Path


import tunelab
from _results import append_record  # bench/_results.py (scripts run from bench/)

ROOT = Path(__file__).resolve().parents[1]
# (name, config, overrides, target test accuracy)
RUNS = [
    ("digits MLP (defaults)", None, [], 0.97),
    ("MNIST 784-256-128-10 Adam, 10 epochs", ROOT / "examples/mnist/mlp_adam.yaml", [], 0.98),
    ("Fashion-MNIST MLP", ROOT / "examples/mnist/fashion_mlp.yaml", [], 0.88),
]


def main() -> None:
    rows = []
    for name, config, overrides, target in RUNS:
        result = tunelab.train(config, overrides, save=False)
        rows.append(dict(name=name, config=str(config.relative_to(ROOT)) if config else "(defaults)",
                         test_accuracy=result.test_accuracy, val_accuracy=result.val_accuracy,
                         epochs=result.epochs_run, seconds=result.seconds, target=target,
                         passed=result.test_accuracy >= target))
    print(f"{'run':<40}{'test acc':>10}{'target':>8}{'epochs':>8}{'seconds':>9}")
    for r in rows:
        print(f"{r['name']:<40}{r['test_accuracy']:>10.4f}{r['target']:>8.2f}{r['epochs']:>8}{r['seconds']:>9.1f}")
    append_record("accuracy", dict(runs=rows))


if __name__ == "__main__":
    main()
