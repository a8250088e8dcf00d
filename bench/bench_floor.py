"""A study at its compute floor: `tunelab tune` against the common Optuna + DataLoader loop.

The study (bench/spaces/floor_mnist.yaml): 24 trials x 8 epochs of an MNIST MLP 784-256-128-10,
batch 128, random sampler with seed 0 over lr log-uniform [1e-4, 1e-1], optimizer sgd / momentum /
adam and dropout uniform [0, 0.5]. Rows:

- tunelab with ASHA (``--workers 2 --pruner asha``), ``--repeats`` times (median);
- tunelab without pruning (the same proposals: which configuration is best when none is cut);
- the common loop, written as users write it (Optuna's PyTorch example): an objective that builds
  the model, a DataLoader and trains every epoch, no pruning, torch's default threads — once over
  a ``TensorDataset`` of the same float tensors, once over a per-sample ``Dataset`` that converts
  uint8 pixels per item as torchvision's ``ToTensor`` does. Same train/validation split.

Compute floor of a row = epochs it trained x the single-epoch time / cores in use (bench/_floor.py),
the single-epoch time being tunelab's own epoch (train + validation and train-eval evaluation) with
one thread, measured first in the same run (median of 3 epochs after a warm-up epoch), the cores in
use the workers (tunelab rows) or torch's default threads (the common loop), capped by the cores:
the wall time the training work would take with every core in use busy and nothing else. Training
FLOP/s = epochs x 54000 samples x 1.007 MFLOP (forward + backward, docs) / wall.

    TUNELAB_DATA=../shared/data python bench/bench_floor.py                 # quiet: ~15 minutes
    TUNELAB_DATA=../shared/data python bench/bench_floor.py --load 1 --skip per-sample,no-pruning
    TUNELAB_DATA=../shared/data python bench/bench_floor.py --trials 6 --epochs 2 --repeats 1   # a look

``--load N`` runs N busy-looping processes (one core each) for the whole run: the competing load.
Prints `uptime` before and after, a table, and appends a JSON line to bench/results/bench_floor.jsonl.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import torch
import torch.nn.functional as F
import yaml

import tunelab
from tunelab.config import from_dict
from tunelab.data import load_data
from tunelab.execute.processes import available_cores

from _floor import cores_in_use, epoch_seconds, epochs_trained, floor  # bench/_floor.py
from _results import append_record  # bench/_results.py (scripts run from bench/)

SPACE = Path(__file__).parent / "spaces" / "floor_mnist.yaml"
FLOP_PER_SAMPLE = 1.007e6  # 784-256-128-10, forward and backward (DESIGN.md)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _spin() -> None:
    while True:
        pass


def space(epochs: int) -> dict:
    sp = yaml.safe_load(SPACE.read_text())
    sp["base"]["training"]["epochs"] = epochs
    return sp


def one_epoch_seconds() -> float:
    """tunelab's single-epoch time (train + evaluations) of the study's MLP (adam, lr 1e-3, dropout
    0.25) with one thread: median of 3 epochs after a warm-up."""
    return epoch_seconds({**space(4)["base"], "optimizer": {"name": "adam", "lr": 1e-3}}, ["model.dropout=0.25"])


def run_tunelab(trials: int, epochs: int, seed: int, workers: int, pruner: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = tunelab.tune(space(epochs), sampler="random", trials=trials, pruner=pruner, workers=workers,
                           storage=f"sqlite:///{tmp}/floor.db", study="floor", seed=seed)
        wall = time.perf_counter() - t0
        ts = res.study.get_trials()
        return {"wall": wall, "best": res.best_value, "best_number": res.best_number,
                "epochs": epochs_trained(ts), "profile": res.profile, "cores": cores_in_use(workers),
                "params": {t.number: t.params for t in ts},
                "values": {t.number: t.value for t in ts if t.value is not None},
                "states": [t.state.name.lower() for t in ts]}


class _PerSample(torch.utils.data.Dataset):
    """torchvision-style MNIST: uint8 pixels, converted per item as ToTensor does."""

    def __init__(self, x, y):
        self.x = (x * 255).round().to(torch.uint8).numpy()
        self.y = y.numpy()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return torch.from_numpy(self.x[i]).float().div(255), int(self.y[i])


def common_objective(data, epochs: int, per_sample: bool):
    make = _PerSample if per_sample else torch.utils.data.TensorDataset
    train_set, val_set = make(data.x_train, data.y_train), make(data.x_val, data.y_val)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("optimizer.lr", 1e-4, 1e-1, log=True)
        name = trial.suggest_categorical("optimizer.name", ["sgd", "momentum", "adam"])
        dropout = trial.suggest_float("model.dropout", 0.0, 0.5)
        model = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Dropout(dropout),
            torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Dropout(dropout), torch.nn.Linear(128, 10))
        if name == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=lr)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9 if name == "momentum" else 0.0)
        train_loader = torch.utils.data.DataLoader(train_set, batch_size=128, shuffle=True)
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=1000)
        accuracy = 0.0
        for _ in range(epochs):
            model.train()
            for xb, yb in train_loader:
                opt.zero_grad()
                F.cross_entropy(model(xb), yb).backward()
                opt.step()
            model.eval()
            correct = 0
            with torch.no_grad():
                for xb, yb in val_loader:
                    correct += (model(xb).argmax(1) == yb).sum().item()
            accuracy = correct / len(val_set)
        return accuracy

    return objective


def run_common(trials: int, epochs: int, seed: int, per_sample: bool) -> dict:
    data = load_data(from_dict({"data": {"name": "mnist"}}).data)
    torch.set_num_threads(torch.get_num_threads())  # as a user's script: torch's default
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    t0 = time.perf_counter()
    study.optimize(common_objective(data, epochs, per_sample), n_trials=trials)
    return {"wall": time.perf_counter() - t0, "best": study.best_value, "best_number": study.best_trial.number,
            "epochs": trials * epochs, "cores": cores_in_use(1, torch.get_num_threads()),
            "params": {t.number: t.params for t in study.trials}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="tunelab ASHA runs (median)")
    ap.add_argument("--load", type=int, default=0, help="busy-looping processes beside the benchmark")
    ap.add_argument("--skip", default="", help="rows to leave out: no-pruning, tensor, per-sample")
    ap.add_argument("--out", default=None, help="results file (default bench/results/bench_floor.jsonl)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cores = available_cores()
    spinners = [mp.get_context("spawn").Process(target=_spin, daemon=True) for _ in range(args.load)]
    for p in spinners:
        p.start()
    before = uptime()
    print(f"uptime before: {before}; competing load: {args.load} busy process(es)", flush=True)
    one_epoch = one_epoch_seconds()  # restores torch's default threads
    print(f"tunelab epoch, one thread: {one_epoch:.3f} s", flush=True)
    rows: dict[str, dict] = {}
    runs = [run_tunelab(args.trials, args.epochs, args.seed, args.workers, "asha") for _ in range(args.repeats)]
    runs.sort(key=lambda r: r["wall"])
    rows["tunelab, asha"] = {**runs[len(runs) // 2], "walls": [r["wall"] for r in runs],
                             "epochs_all": [r["epochs"] for r in runs]}
    print(f"tunelab asha: {[round(r['wall'], 1) for r in runs]} s", flush=True)
    if "no-pruning" not in skip:
        rows["tunelab, no pruning"] = run_tunelab(args.trials, args.epochs, args.seed, args.workers, "none")
    if "tensor" not in skip:
        rows["optuna + DataLoader(TensorDataset)"] = run_common(args.trials, args.epochs, args.seed, False)
    if "per-sample" not in skip:
        rows["optuna + DataLoader(per-sample Dataset)"] = run_common(args.trials, args.epochs, args.seed, True)
    after = uptime()
    for p in spinners:
        p.terminate()
    train_flop = 54000 * FLOP_PER_SAMPLE
    print(f"\n{args.trials} trials x {args.epochs} epochs, MNIST 784-256-128-10; {cores} cores; "
          f"load {args.load}; uptime after: {after}")
    print(f"{'':<42}{'wall s':>8}{'epochs':>8}{'floor s':>9}{'x floor':>9}{'GFLOP/s':>9}{'best val':>10}")
    for name, r in rows.items():
        r.update(floor(r["wall"], r["epochs"], one_epoch, r["cores"]))
        print(f"{name:<42}{r['wall']:>8.1f}{r['epochs']:>8}{r['floor']:>9.1f}{r['x_floor']:>9.2f}"
              f"{r['epochs'] * train_flop / r['wall'] / 1e9:>9.1f}{r['best']:>10.4f}")
    ours = rows["tunelab, asha"]
    for name, r in rows.items():
        if name.startswith("optuna"):
            print(f"tunelab (asha) vs {name}: {r['wall'] / ours['wall']:.2f}x less wall time")
    full = rows.get("tunelab, no pruning")
    if full is not None:
        kept = full["best_number"] in ours["values"] and ours["states"][full["best_number"]] == "complete"
        print(f"without pruning the best is trial #{full['best_number']} ({full['best']:.4f}); with ASHA "
              f"(median run) #{ours['best_number']} ({ours['best']:.4f}); ASHA "
              f"{'kept' if kept else 'pruned'} #{full['best_number']}")
        ours["kept_unpruned_best"] = kept
    common = [r for n, r in rows.items() if n.startswith("optuna")]
    same = all(r["params"] == ours["params"] for r in common + ([full] if full else []))
    print(f"same proposals in every row: {same}")
    append_record("floor", dict(**vars(args), cores=cores, epoch_s=one_epoch, uptime_before=before,
                                uptime_after=after, same_proposals=same,
                                rows={n: {k: v for k, v in r.items() if k not in ("params",)}
                                      for n, r in rows.items()}), out=args.out)


if __name__ == "__main__":
    main()
