"""A bare PyTorch loop's MNIST epochs in a process of its own, with torch's default threads (every
core, as a script that sets nothing gets): bench_epoch.py's bare loop (784-256-128-10, batch 128,
Adam, batches sliced before the clock, loss and accuracy read once per epoch) with the evaluation
fit() does each epoch (validation and the 6,000-example training subset). Prints one JSON object:
the epoch times and the thread count. Run by bench_default_threads.py.

    TUNELAB_DATA=../shared/data python bench/_bare_epochs.py 4 [--fused]
"""

from __future__ import annotations

import json
import sys

import torch

from bench_epoch import _setup, bare_loop  # bench/ (scripts run from bench/)


def main() -> None:
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    cfg, data = _setup(128)
    epoch = bare_loop(cfg, data, fused="--fused" in sys.argv, train_eval=True)
    times = [epoch() for _ in range(epochs)]
    print(json.dumps({"seconds": times, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
