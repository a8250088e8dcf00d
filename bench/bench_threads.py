"""Threads on a shared CPU: one MNIST epoch of the 784-256-128-10 MLP (Adam, batch 128) with
torch's default thread count (every core), with 1 thread, and with the free-cores policies,
on the machine as it is and beside a competing CPU load that the benchmark starts itself.

Policies, each decided before its epoch as a run decides in ``prepare``:

- default:      torch's own count (``torch.get_num_threads()`` when the script starts: every core);
- 1:            one thread;
- free-loadavg: ``auto_threads(cores, 1-min load average - this process's part)``, the load
                average alone, as a process that has not trained yet sees it;
- auto:         ``auto_threads(usable_cores(), machine_load())``, what ``training.threads: null``
                does (the larger of that average and the busy cores of the last 0.1 s).

Loads: ``--spinners 0,1,2`` — 0 is the machine as it is (other users' work included; the load
average before the run is printed and recorded), k > 0 adds k processes spinning in a Python
loop, started before the block and killed after it. Each load is one block: the spinners
start, 1 s passes, one warm-up epoch, then ``--rounds`` interleaved rounds (one epoch of every
policy per round, the order rotated each round); each epoch is timed alone (the ``fit()`` call)
and the median with min/max is reported. The epoch is shortened with ``data.train_size``
(``--train-size``, 10,000 by default; the validation pass keeps its 6,000 images) so that the
slow cells finish. GFLOP/s: 1.007 MFLOP per training image over the whole call (validation
included), as in bench_epoch.py. Prints a table and appends a JSON line to bench/results/bench_threads.jsonl.

    TUNELAB_DATA=../shared/data python bench/bench_threads.py            # about 2-5 minutes
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from tunelab.config import from_dict
from tunelab.data import load_data
from tunelab.nn import build_model
from tunelab.nn.stats import flops_per_sample
from tunelab.trainer import prepare as prep
from tunelab.trainer.fit import fit
from _results import append_record  # bench/_results.py (scripts run from bench/)

HIDDEN = [256, 128]
TORCH_DEFAULT = torch.get_num_threads()  # before anything changes it


def _loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def _fresh_reading() -> float:
    """machine_load() as a run starting now reads it (the 2-s reuse would hand back the last)."""
    prep._LAST_LOAD.clear()
    return prep.machine_load()


POLICIES = {
    "default": lambda cores: TORCH_DEFAULT,
    "1": lambda cores: 1,
    "free-loadavg": lambda cores: prep.auto_threads(cores, _loadavg() - prep._own_load()),
    "auto": lambda cores: prep.auto_threads(cores, _fresh_reading()),
}


def _block(spinners: int, rounds: int, cfg, data, model) -> dict:
    """One load level: start the spinners, time every policy's epochs, stop the spinners."""
    procs: list[subprocess.Popen] = []
    cores = prep.usable_cores()
    cells = {name: dict(seconds=[], threads=[], decide_ms=[]) for name in POLICIES}
    try:
        for _ in range(spinners):  # one core's worth of competing work each
            procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        time.sleep(1.0)
        load_at_start = _loadavg()
        prep.set_threads(1)
        fit(cfg, data, model)  # warm-up epoch
        names = list(POLICIES)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
                t0 = time.perf_counter()
                n = POLICIES[name](cores)
                cells[name]["decide_ms"].append((time.perf_counter() - t0) * 1e3)
                prep.set_threads(n)
                t0 = time.perf_counter()
                fit(cfg, data, model)
                cells[name]["seconds"].append(time.perf_counter() - t0)
                cells[name]["threads"].append(n)
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
    return dict(spinners=spinners, loadavg_at_start=load_at_start, loadavg_at_end=_loadavg(), cells=cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="timed epochs per policy and load (after 1 warm-up)")
    ap.add_argument("--spinners", default="0,1,2", help="competing busy processes per block, comma-separated")
    ap.add_argument("--train-size", type=int, default=10000, help="training images per epoch (MNIST has 54,000)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_threads.jsonl"))
    args = ap.parse_args()
    before = dict(loadavg=os.getloadavg() if hasattr(os, "getloadavg") else None,
                  busy_elsewhere=prep._busy_elsewhere(1.0))
    print(f"before the run: load average {before['loadavg']}, cores busy with other work over 1 s "
          f"{before['busy_elsewhere']}; usable cores {prep.usable_cores()}, torch default threads {TORCH_DEFAULT}")
    cfg = from_dict({"data": {"name": "mnist", "train_size": args.train_size}, "model": {"hidden": HIDDEN},
                     "optimizer": {"name": "adam", "lr": 1e-3},
                     "training": {"batch_size": 128, "device": "cpu", "epochs": 1}})
    data = load_data(cfg.data, device="cpu")
    torch.manual_seed(0)
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    flop_epoch = flops_per_sample(model, data.input_shape) * len(data.y_train)
    blocks = [_block(int(k), args.rounds, cfg, data, model) for k in args.spinners.split(",")]

    print(f"\nMNIST epoch ({len(data.y_train)} training + {len(data.y_val)} validation images), "
          f"MLP 784-{'-'.join(map(str, HIDDEN))}-10, Adam, batch 128; {args.rounds} rounds per cell")
    print(f"{'load':<26}{'policy':<14}{'threads':>9}{'median s':>10}{'min':>8}{'max':>8}"
          f"{'GFLOP/s':>9}{'x default':>11}{'decide ms':>11}")
    for b in blocks:
        label = "as is" if not b["spinners"] else f"+{b['spinners']} spinner{'s' * (b['spinners'] > 1)}"
        label += f" (load {b['loadavg_at_start']:.1f})"
        base = statistics.median(b["cells"]["default"]["seconds"])
        for name, c in b["cells"].items():
            med = statistics.median(c["seconds"])
            c.update(median=med, min=min(c["seconds"]), max=max(c["seconds"]), gflops=flop_epoch / med / 1e9,
                     speedup_vs_default=base / med)
            threads = ",".join(map(str, sorted(set(c["threads"]))))
            print(f"{label:<26}{name:<14}{threads:>9}{med:>10.3f}{c['min']:>8.3f}{c['max']:>8.3f}"
                  f"{c['gflops']:>9.2f}{base / med:>11.2f}{statistics.median(c['decide_ms']):>11.1f}")
            label = ""
    after = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"\nload average after the run: {after} (the spinners and this process included)")
    append_record("threads", dict(train_size=len(data.y_train), rounds=args.rounds, flop_per_epoch=flop_epoch,
                                  cores=prep.usable_cores(), torch_default=TORCH_DEFAULT, before=before,
                                  loadavg_after=after, blocks=blocks), out=args.out)


if __name__ == "__main__":
    main()
